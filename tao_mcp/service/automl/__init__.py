"""The AutoML route: NVIDIA's AutoMLRunner (optional extra `tao-mcp[automl]`) driving tao-mcp's own jobs.

Modules, each importing only the ones before it: runs.py (the store table), review.py (search space, GPU-hours
bound), metric.py (status.json kpi records), engine.py (lazy engine import, workspace, resume repair),
adapter.py (the platform-SDK shape over JobService), service.py (AutomlService: plan, start, status, wait,
stop, list, resume).
"""
