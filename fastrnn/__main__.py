"""``python -m fastrnn bench [...]`` (the benchmark table) and ``python -m fastrnn config``."""

import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "bench"
    if command == "bench":
        from fastrnn._bench import main as bench_main
        return bench_main(argv)
    if command == "config":
        import fastrnn
        fastrnn.show_config()
        return 0
    print(f"usage: python -m fastrnn [bench|config] ... (unknown command {command!r})",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
