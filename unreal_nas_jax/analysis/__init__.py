"""The paper's analyses: run directories, convergence, rankings, plots and TensorBoard events."""
