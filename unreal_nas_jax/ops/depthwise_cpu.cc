// Stacked depthwise convolution on the CPU, as XLA FFI custom calls: forward, input gradient and
// kernel gradient. XLA:CPU runs grouped convolutions and their gradients far slower than these
// loops (see unreal_nas_jax/ops/depthwise.py), and a custom call keeps the program small.
//
// Layouts (row-major): x (S, N, H, W, C), kernel (S, M, K, K, C), out (S, M, N, Ho, Wo, C):
//   out[s, m, n, y, x, c] = sum_{i, j} kernel[s, m, i, j, c]
//                             * x[s, n, y * stride - pad + i * dil, x * stride - pad + j * dil, c]
// with zero padding. Channels are innermost, so every inner loop is a contiguous vector loop.
//
// Work is split into chunks whose boundaries depend only on the shapes, and every output element
// (or partial sum) is computed by one chunk in a fixed order, so results are bit-identical for
// any number of threads.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Geometry {
  int64_t s, m, n, h, w, c, k, ho, wo, stride, dil, pad;
};

// Runs body(chunk) for chunk in [0, chunks) on the caller and the XLA intra-op thread pool. The
// caller claims chunks too and returns once all are done; helpers that start late find none.
using Body = std::function<void(int64_t)>;
// Runs body(chunk) for every chunk in [0, chunks), in any order and on any threads.
using Runner = std::function<void(int64_t, const Body&)>;

void ParallelFor(ffi::ThreadPool& pool, int64_t chunks, const Body& body) {
  if (chunks <= 1) {
    for (int64_t i = 0; i < chunks; ++i) body(i);
    return;
  }
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
    std::function<void(int64_t)> body;
    int64_t chunks;
  };
  auto shared = std::make_shared<Shared>();
  shared->body = body;
  shared->chunks = chunks;
  auto work = [](const std::shared_ptr<Shared>& sh) {
    for (int64_t i = sh->next.fetch_add(1); i < sh->chunks; i = sh->next.fetch_add(1)) {
      sh->body(i);
      if (sh->done.fetch_add(1) + 1 == sh->chunks) {
        std::lock_guard<std::mutex> lock(sh->mu);
        sh->cv.notify_all();
      }
    }
  };
  int64_t helpers = std::min<int64_t>(pool.num_threads(), chunks - 1);
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([shared, work]() { work(shared); });
  }
  work(shared);
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->cv.wait(lock, [&] { return shared->done.load() == shared->chunks; });
}

// For every output position along one axis, the taps t that read inside the input and the input
// position they read: o * stride - pad + t * dil in [0, size). `first[o]` indexes `taps`/`input`.
struct TapTable {
  std::vector<int64_t> first, tap, input;
};

TapTable OutputTaps(int64_t outputs, int64_t size, const Geometry& g) {
  TapTable t;
  for (int64_t o = 0; o < outputs; ++o) {
    t.first.push_back(t.tap.size());
    for (int64_t k = 0; k < g.k; ++k) {
      int64_t in = o * g.stride - g.pad + k * g.dil;
      if (in >= 0 && in < size) {
        t.tap.push_back(k);
        t.input.push_back(in);
      }
    }
  }
  t.first.push_back(t.tap.size());
  return t;
}

// For every input position along one axis, the taps t and output positions o that read it.
TapTable InputTaps(int64_t size, int64_t outputs, const Geometry& g) {
  TapTable t;
  for (int64_t u = 0; u < size; ++u) {
    t.first.push_back(t.tap.size());
    for (int64_t k = 0; k < g.k; ++k) {
      int64_t shifted = u + g.pad - k * g.dil;
      if (shifted >= 0 && shifted % g.stride == 0 && shifted / g.stride < outputs) {
        t.tap.push_back(k);
        t.input.push_back(shifted / g.stride);  // here: the output position
      }
    }
  }
  t.first.push_back(t.tap.size());
  return t;
}

// Channels are processed in blocks of one 64-byte vector; each block's accumulator stays in a
// register over all taps. `Lanes` channels per block, the remainder one block of `rest`.
template <typename T>
constexpr int64_t kLanes = 64 / sizeof(T);

template <typename T, typename F>
inline void ForChannelBlocks(int64_t channels, F&& f) {
  int64_t c0 = 0;
  for (; c0 + kLanes<T> <= channels; c0 += kLanes<T>) f(c0, kLanes<T>);
  if (c0 < channels) f(c0, channels - c0);
}

// acc[0:len] += a[0:len] * b[0:len], len <= kLanes (a full block vectorises as one vector).
template <typename T>
inline void MulAdd(T* __restrict acc, const T* __restrict a, const T* __restrict b, int64_t len) {
  if (len == kLanes<T>) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes<T>; ++l) acc[l] += a[l] * b[l];
  } else {
    for (int64_t l = 0; l < len; ++l) acc[l] += a[l] * b[l];
  }
}

template <typename T>
inline void Store(T* __restrict out, const T* __restrict acc, int64_t len) {
  for (int64_t l = 0; l < len; ++l) out[l] = acc[l];
}

template <typename T>
void Forward(const Geometry& g, const T* __restrict x, const T* __restrict kernel,
             T* __restrict out, const Runner& run) {
  const int64_t C = g.c, W = g.w, K = g.k, HO = g.ho, WO = g.wo;
  const TapTable rows = OutputTaps(g.ho, g.h, g), cols = OutputTaps(g.wo, g.w, g);
  const int64_t *rfirst = rows.first.data(), *rtap = rows.tap.data(), *rin = rows.input.data();
  const int64_t *cfirst = cols.first.data(), *ctap = cols.tap.data(), *cin = cols.input.data();
  // One chunk per (s, m, n) image.
  run(g.s * g.m * g.n, [=](int64_t chunk) {
    const int64_t n = chunk % g.n, sm = chunk / g.n, s = sm / g.m;
    const T* xs = x + (s * g.n + n) * g.h * W * C;
    const T* ks = kernel + sm * K * K * C;
    T* os = out + chunk * HO * WO * C;
    for (int64_t y = 0; y < HO; ++y) {
      for (int64_t xo = 0; xo < WO; ++xo) {
        ForChannelBlocks<T>(C, [&](int64_t c0, int64_t len) {
          T acc[kLanes<T>] = {};
          for (int64_t a = rfirst[y]; a < rfirst[y + 1]; ++a) {
            const T* xrow = xs + rin[a] * W * C + c0;
            const T* krow = ks + rtap[a] * K * C + c0;
            for (int64_t b = cfirst[xo]; b < cfirst[xo + 1]; ++b) {
              MulAdd(acc, krow + ctap[b] * C, xrow + cin[b] * C, len);
            }
          }
          Store(os + (y * WO + xo) * C + c0, acc, len);
        });
      }
    }
  });
}

template <typename T>
void InputGrad(const Geometry& g, const T* __restrict grad, const T* __restrict kernel,
               T* __restrict dx, const Runner& run) {
  const int64_t C = g.c, W = g.w, K = g.k, WO = g.wo, M = g.m;
  const int64_t plane = g.n * g.ho * WO * C;  // one filter's output gradient
  const TapTable rows = InputTaps(g.h, g.ho, g), cols = InputTaps(g.w, g.wo, g);
  const int64_t *rfirst = rows.first.data(), *rtap = rows.tap.data(), *rout = rows.input.data();
  const int64_t *cfirst = cols.first.data(), *ctap = cols.tap.data(), *cout = cols.input.data();
  // One chunk per (s, n) input image; it sums over the M filters.
  run(g.s * g.n, [=](int64_t chunk) {
    const int64_t n = chunk % g.n, s = chunk / g.n;
    T* out = dx + chunk * g.h * W * C;
    const T* gs = grad + (s * M * g.n + n) * g.ho * WO * C;  // filter 0 of (s, n)
    const T* ks = kernel + s * M * K * K * C;
    for (int64_t u = 0; u < g.h; ++u) {
      for (int64_t v = 0; v < W; ++v) {
        ForChannelBlocks<T>(C, [&](int64_t c0, int64_t len) {
          T acc[kLanes<T>] = {};
          for (int64_t a = rfirst[u]; a < rfirst[u + 1]; ++a) {
            const T* grow = gs + rout[a] * WO * C + c0;
            const T* krow = ks + rtap[a] * K * C + c0;
            for (int64_t b = cfirst[v]; b < cfirst[v + 1]; ++b) {
              const T* gv = grow + cout[b] * C;
              const T* kv = krow + ctap[b] * C;
              for (int64_t m = 0; m < M; ++m) MulAdd(acc, kv + m * K * K * C, gv + m * plane, len);
            }
          }
          Store(out + (u * W + v) * C + c0, acc, len);
        });
      }
    }
  });
}

template <typename T>
void KernelGrad(const Geometry& g, const T* __restrict grad, const T* __restrict x,
                T* __restrict dk, const Runner& run) {
  const int64_t C = g.c, W = g.w, K = g.k, HO = g.ho, WO = g.wo, taps = K * K;
  const TapTable rows = OutputTaps(g.ho, g.h, g), cols = OutputTaps(g.wo, g.w, g);
  const int64_t *rfirst = rows.first.data(), *rtap = rows.tap.data(), *rin = rows.input.data();
  const int64_t *cfirst = cols.first.data(), *ctap = cols.tap.data(), *cin = cols.input.data();
  // Partial sums over fixed blocks of images, added up in block order afterwards.
  const int64_t block = 4;
  const int64_t blocks = (g.n + block - 1) / block;
  std::vector<T> partial_sums(g.s * g.m * blocks * taps * C);
  T* partial = partial_sums.data();
  run(g.s * g.m * blocks, [=](int64_t chunk) {
    const int64_t b = chunk % blocks, sm = chunk / blocks, s = sm / g.m;
    T* part = partial + chunk * taps * C;
    std::vector<T> acc_store(taps * kLanes<T>);
    T* acc = acc_store.data();
    ForChannelBlocks<T>(C, [&](int64_t c0, int64_t len) {
      std::fill(acc, acc + taps * kLanes<T>, T(0));
      for (int64_t n = b * block; n < std::min(g.n, (b + 1) * block); ++n) {
        const T* xs = x + (s * g.n + n) * g.h * W * C + c0;
        const T* gs = grad + (sm * g.n + n) * HO * WO * C + c0;
        for (int64_t y = 0; y < HO; ++y) {
          for (int64_t xo = 0; xo < WO; ++xo) {
            const T* gv = gs + (y * WO + xo) * C;
            for (int64_t a = rfirst[y]; a < rfirst[y + 1]; ++a) {
              const T* xrow = xs + rin[a] * W * C;
              T* arow = acc + rtap[a] * K * kLanes<T>;
              for (int64_t bb = cfirst[xo]; bb < cfirst[xo + 1]; ++bb) {
                MulAdd(arow + ctap[bb] * kLanes<T>, gv, xrow + cin[bb] * C, len);
              }
            }
          }
        }
      }
      for (int64_t t = 0; t < taps; ++t) Store(part + t * C + c0, acc + t * kLanes<T>, len);
    });
  });
  run(g.s * g.m, [=](int64_t sm) {
    T* out = dk + sm * taps * C;
    std::fill(out, out + taps * C, T(0));
    for (int64_t bl = 0; bl < blocks; ++bl) {
      const T* p = partial + (sm * blocks + bl) * taps * C;
      for (int64_t e = 0; e < taps * C; ++e) out[e] += p[e];
    }
  });
}

ffi::Error CheckRank(const ffi::AnyBuffer& buffer, size_t rank, const char* what) {
  if (buffer.dimensions().size() != rank) {
    return ffi::Error::InvalidArgument(std::string(what) + " must have rank " +
                                       std::to_string(rank));
  }
  return ffi::Error::Success();
}

// x (S,N,H,W,C), kernel (S,M,K,K,C), out (S,M,N,Ho,Wo,C); any of them gives the geometry.
Geometry MakeGeometry(ffi::Span<const int64_t> x, ffi::Span<const int64_t> kernel,
                      ffi::Span<const int64_t> out, int64_t stride, int64_t dil, int64_t pad) {
  return Geometry{x[0], kernel[1], x[1], x[2], x[3], x[4], kernel[2],
                  out[3], out[4], stride, dil, pad};
}

Runner Pool(ffi::ThreadPool& pool) {
  return [&pool](int64_t chunks, const Body& body) { ParallelFor(pool, chunks, body); };
}

// Runs the float32 or the float64 instance of a kernel.
template <typename F32, typename F64>
ffi::Error Dispatch(ffi::DataType dtype, F32 f32, F64 f64) {
  if (dtype == ffi::DataType::F32) {
    f32();
  } else if (dtype == ffi::DataType::F64) {
    f64();
  } else {
    return ffi::Error::InvalidArgument("depthwise CPU kernels support float32 and float64");
  }
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer kernel,
                       ffi::Result<ffi::AnyBuffer> out, int64_t stride, int64_t dilation,
                       int64_t padding) {
  for (auto err : {CheckRank(x, 5, "x"), CheckRank(kernel, 5, "kernel"), CheckRank(*out, 6, "out")}) {
    if (err.failure()) return err;
  }
  Geometry g = MakeGeometry(x.dimensions(), kernel.dimensions(), out->dimensions(), stride,
                            dilation, padding);
  return Dispatch(
      x.element_type(),
      [&] { Forward<float>(g, x.typed_data<float>(), kernel.typed_data<float>(),
                           out->typed_data<float>(), Pool(pool)); },
      [&] { Forward<double>(g, x.typed_data<double>(), kernel.typed_data<double>(),
                            out->typed_data<double>(), Pool(pool)); });
}

ffi::Error InputGradImpl(ffi::ThreadPool pool, ffi::AnyBuffer grad, ffi::AnyBuffer kernel,
                         ffi::Result<ffi::AnyBuffer> dx, int64_t stride, int64_t dilation,
                         int64_t padding) {
  for (auto err : {CheckRank(grad, 6, "grad"), CheckRank(kernel, 5, "kernel"), CheckRank(*dx, 5, "dx")}) {
    if (err.failure()) return err;
  }
  Geometry g = MakeGeometry(dx->dimensions(), kernel.dimensions(), grad.dimensions(), stride,
                            dilation, padding);
  return Dispatch(
      grad.element_type(),
      [&] { InputGrad<float>(g, grad.typed_data<float>(), kernel.typed_data<float>(),
                             dx->typed_data<float>(), Pool(pool)); },
      [&] { InputGrad<double>(g, grad.typed_data<double>(), kernel.typed_data<double>(),
                              dx->typed_data<double>(), Pool(pool)); });
}

ffi::Error KernelGradImpl(ffi::ThreadPool pool, ffi::AnyBuffer grad, ffi::AnyBuffer x,
                          ffi::Result<ffi::AnyBuffer> dk, int64_t stride, int64_t dilation,
                          int64_t padding) {
  for (auto err : {CheckRank(grad, 6, "grad"), CheckRank(x, 5, "x"), CheckRank(*dk, 5, "dk")}) {
    if (err.failure()) return err;
  }
  Geometry g = MakeGeometry(x.dimensions(), dk->dimensions(), grad.dimensions(), stride,
                            dilation, padding);
  return Dispatch(
      grad.element_type(),
      [&] { KernelGrad<float>(g, grad.typed_data<float>(), x.typed_data<float>(),
                              dk->typed_data<float>(), Pool(pool)); },
      [&] { KernelGrad<double>(g, grad.typed_data<double>(), x.typed_data<double>(),
                               dk->typed_data<double>(), Pool(pool)); });
}

}  // namespace

#define UNREAL_NAS_BINDING(impl)                                                   \
  ffi::Ffi::Bind()                                                                \
      .Ctx<ffi::ThreadPool>()                                                     \
      .Arg<ffi::AnyBuffer>()                                                      \
      .Arg<ffi::AnyBuffer>()                                                      \
      .Ret<ffi::AnyBuffer>()                                                      \
      .Attr<int64_t>("stride")                                                    \
      .Attr<int64_t>("dilation")                                                  \
      .Attr<int64_t>("padding")

XLA_FFI_DEFINE_HANDLER_SYMBOL(UnrealNasDepthwiseForward, ForwardImpl,
                              UNREAL_NAS_BINDING(ForwardImpl));
XLA_FFI_DEFINE_HANDLER_SYMBOL(UnrealNasDepthwiseInputGrad, InputGradImpl,
                              UNREAL_NAS_BINDING(InputGradImpl));
XLA_FFI_DEFINE_HANDLER_SYMBOL(UnrealNasDepthwiseKernelGrad, KernelGradImpl,
                              UNREAL_NAS_BINDING(KernelGradImpl));
