"""Packaging of nasp-proximal: the proximal-search core (nasp), SIF (sif) and the `nasp` command (nasp.cli).

The distribution is named nasp-proximal (PyPI's "nasp" and "sif" are other projects); the import
names are nasp and sif, the command is nasp.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "nasp" / "__init__.py").read_text()).group(1)

setup(
    name="nasp-proximal",
    version=VERSION,
    description="Neural architecture search by proximal iterations: SIF for recommenders, CNN/RNN cells, and the core optimizer",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["nasp", "nasp.*", "sif", "sif.*"]),
    install_requires=[
        "torch>=2.1,<3",
        "numpy>=1.23",
        "scipy>=1.9",
        "pandas>=1.5",
        "scikit-learn>=1.1",
        "click>=8.1",
        "tqdm>=4.64",
        "matplotlib>=3.6",
    ],
    extras_require={"test": ["pytest>=7", "optuna>=3"], "tpe": ["optuna>=3"]},
    entry_points={
        "console_scripts": ["nasp=nasp.cli:main"],
        # each domain mounts its Click group here; another package adds a domain the same way
        "nasp.domains": ["sif = sif.cli:sif", "cnn = nasp.cnn.cli:cnn", "rnn = nasp.rnn.cli:rnn", "data = nasp.data_cli:data"],
    },
)
