"""``python -m benchmarks``: every speed benchmark in quick mode, one table (see run_all.py).

``python -m benchmarks tutorials``: every tutorial notebook in full mode, wall
time and peak memory per notebook (see bench_tutorials.py).
"""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["tutorials"]:
        from benchmarks.bench_tutorials import main as tutorials_main

        tutorials_main(sys.argv[2:])
    else:
        from benchmarks.run_all import main

        main()
