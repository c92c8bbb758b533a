"""Workloads per framework: each module lists its workloads and the configurations it can run."""
