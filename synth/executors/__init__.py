"""Executors other than the in-process asyncio one: ``synth run --executor ray`` (docs/ray.md).

Every executor runs rows through the same :class:`synth.engine.runner.Runner`; they differ in where it runs
and how its records reach the run folder's store. Importing this package does not import Ray.
"""
