"""What pyproject.toml cannot say: the configs/ folder at the top of the source tree ships inside the package,
as selfseg/configs, so a wheel install has the named configs (`--config smoke`) too."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["selfseg*"]) + ["selfseg.configs", "selfseg.configs.benchmarks"],
    package_dir={"selfseg.configs": "configs"},
)
