# Written by setup.py at build time.
BUILD_INFO = {'compiler': 'gcc', 'compile_args': ['-O3', '-fno-math-errno', '-fno-trapping-math', '-march=native', '-fopenmp'], 'link_args': ['-fopenmp'], 'openmp': True, 'sanitize': ''}
