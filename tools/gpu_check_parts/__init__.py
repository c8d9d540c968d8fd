"""
The pieces of ``tools/gpu_check.py`` (its command-line entry point), one module per job:

- :mod:`.common`: the repository root, the log line, names, hashes, tools/bootstrap.py;
- :mod:`.requirements`: what the project requires, read from ``requirements/*.txt``;
- :mod:`.device`: the GPU machine (Python, platforms, its preinstalled packages, read from
  ``device_packages.txt`` beside this file);
- :mod:`.prepare`: ``prepare`` (wheel selection, download, ``MANIFEST.json``) and
  :func:`~.prepare.check_prepared`;
- :mod:`.runner`: the check's state, time budget, processes and report files (:class:`Check`);
- :mod:`.install`: the offline install and the environment probe;
- :mod:`.parts`: the measured parts, (a) tests, (b) train, (c) bench, (d) cost;
- :mod:`.report`: the markdown report.

Standard library (and pip's vendored ``packaging``) only: it runs before anything is installed.
tools/ is not a package: ``tools/gpu_check.py`` loads this folder by its path, as the package
``gpu_check_parts``, so the modules import each other relatively.
"""
