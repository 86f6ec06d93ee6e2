"""The points (3D assets) modality: world.py (procedural primitives), data.py (world + mesh folders), pipeline.py
(PointsPipeline), io.py (PLY, alpha-shape meshes, views, turntables), training.py, analyzer.py, metrics.py, cli.py."""
