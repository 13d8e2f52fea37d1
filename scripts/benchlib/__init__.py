"""archfs performance benchmark (run it through `scripts/bench`).

Modules: settings (sizes, paths), textgen + workloads (deterministic zips),
machine (host facts, cache dropping), procs (daemon RSS), tools + mounts
(how each FUSE tool is mounted and cleaned up), reference (zlib/disk
baselines), probes (timed primitives), measurements (one function per
row group), rows + report (medians, table, JSON), install (peers),
preflight (disk, archfs probe), cli (the driver).
"""
