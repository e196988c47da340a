"""Binary conv kernel and model Q against torch fp32 (same as ``slimface bench kernels``).

    python benchmarks/bench_kernels.py --threads 2 > kernels.json   # table on stderr
"""
import sys

from slimface.cli.bench_kernels import main

if __name__ == "__main__":
    sys.exit(main())
