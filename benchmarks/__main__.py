"""``python -m benchmarks``: every speed benchmark in quick mode, one table (see run_all.py)."""

from benchmarks.run_all import main

if __name__ == "__main__":
    main()
