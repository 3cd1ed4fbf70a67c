"""Side-by-side benchmarks: each ratio compares us with a peer or a floor in the same run."""
