"""Install resnet_gluon. The verified, pinned stack is installed by ``tools/setup_env.sh``."""
from setuptools import find_packages, setup

setup(
    name="resnet_gluon",
    version="0.2.0",  # resnet_gluon.__version__
    description="ResNet-50 v1.5 training, evaluation and serving with Apache MXNet Gluon, "
    "modelled on NVIDIA's MXNet recipe (DALI, Horovod, AMP)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.8,<3.12",
    packages=find_packages(include=["resnet_gluon", "resnet_gluon.*"]),
    install_requires=[
        # mxnet itself is not listed: the CPU build ("mxnet") and CUDA builds ("mxnet-cu102",
        # "mxnet-cu112", ...) are different distributions of the same package; install exactly one.
        "numpy>=1.16,<1.24",
        "tqdm",
        "safetensors",
    ],
    extras_require={
        "cpu": ["mxnet==1.9.1"],
        "cu102": ["mxnet-cu102==1.9.1"],
        "cu112": ["mxnet-cu112==1.9.1"],
        "cu117": ["mxnet-cu117==1.9.1"],
        "dali": ["nvidia-dali-cuda120==1.35.0"],
        "horovod": ["horovod==0.28.1"],
        "plot": ["matplotlib<3.8"],
        "tensorboard": ["tensorboardX"],
        "test": ["pytest", "pytest-xdist", "gluoncv==0.10.5.post0", "Pillow", "import-linter==2.17"],
        "docs": ["sphinx==8.1.3"],
    },
    entry_points={"console_scripts": ["resnet-gluon=resnet_gluon.cli:main"]},
    license="Apache-2.0",
)
