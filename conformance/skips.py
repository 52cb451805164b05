"""The tests of Cog's suite that cannot apply to cocina, each with the reason, and scheduling constraints.

A test is skipped only when what it checks exists only with Docker images: building or inspecting an image (its
labels other than the OpenAPI schema, its base image, its system packages, its Python), `cog exec` and PTYs, OCI
registries, Cog's wheels. cocina runs a project's predictor in the environment cocina is installed in and builds
no image; `docs/cog-compat.md` explains each group. Everything else runs, and a test that fails is a failure.
"""

from __future__ import annotations

__all__ = ["EXCLUSIVE", "SKIPS"]

_IMAGE_BUILD = "checks the Docker image `cog build` makes ({what}); cocina builds no image"
_ENVIRONMENT = (
    "checks what an image build installs ({what}); cocina runs the predictor in its own environment and "
    "installs nothing"
)
_EXEC = "`cog exec` runs a command inside the project's image; cocina has no image to run it in"
_PTY = "`cog exec` under a pseudo-terminal, inside the project's image; cocina has no image"
_REGISTRY = "needs an OCI registry container (`registry-start`) and Cog's managed weights in OCI images"
_DEBUG = "`cog debug` prints the Dockerfile Cog would build ({what}); cocina writes no Dockerfile here"
_WHEEL = "installs Cog's own wheels (COG_SDK_WHEEL, COGLET_WHEEL) into the image; cocina is not installed that way"

SKIPS: dict[str, str] = {
    # Image builds, their labels and their base images.
    "build_base_image_sha": _IMAGE_BUILD.format(what="the cog-base image's layer label"),
    "build_cog_init": _IMAGE_BUILD.format(what="`cog init` templates built into an image, 'Image built as'"),
    "build_cog_version_match": _IMAGE_BUILD.format(what="the run.cog.version label against the image's cog"),
    "build_gpu_labels": _IMAGE_BUILD.format(what="GPU/CUDA labels and OCI version labels"),
    "build_image_option": _IMAGE_BUILD.format(what="the `image:` name given to the built image"),
    "build_openapi_schema": _IMAGE_BUILD.format(what="the schema label against the run.cog.version label"),
    "build_pip_freeze": _IMAGE_BUILD.format(what="the run.cog.pip_freeze label"),
    "build_python313_base_image": _IMAGE_BUILD.format(what="a cog-base image for Python 3.13"),
    "build_separate_weights_r8im": _IMAGE_BUILD.format(what="--separate-weights image tagging"),
    "build_torch_version_required": _IMAGE_BUILD.format(what="choosing a CUDA base image from the torch pin"),
    "ca_cert": _IMAGE_BUILD.format(what="CA certificates installed into the image, checked with docker run"),
    "secrets": _IMAGE_BUILD.format(what="build secrets mounted into `build.run` steps"),
    "torch_270_cuda_126": _IMAGE_BUILD.format(what="a torch 2.7.0 + CUDA 12.6 GPU image"),
    "torch_271_cuda_128": _IMAGE_BUILD.format(what="a torch 2.7.1 + CUDA 12.8 GPU image"),
    "torch_baseimage_no_cog_base": _IMAGE_BUILD.format(what="a torch 1.13 CUDA image without cog-base"),
    "torch_baseimage_precompile": _IMAGE_BUILD.format(what="a torch 1.13 CUDA image with --precompile"),
    # What an image build installs.
    "apt_packages": _ENVIRONMENT.format(what="apt system_packages, checked by a `build.run` command"),
    "ffmpeg_package": _ENVIRONMENT.format(what="ffmpeg and torch 2.5.1 on CUDA 12.4"),
    "zsh_package": _ENVIRONMENT.format(what="the zsh system package in the image's /bin"),
    "granite_project": _ENVIRONMENT.format(what="pydantic pinned to 2.11.9 by python_requirements"),
    "local_python_requirement_artifact": _ENVIRONMENT.format(
        what="local sdist, zip and wheel artifacts listed in python_requirements"
    ),
    "tensorflow": _ENVIRONMENT.format(what="TensorFlow 2.11 and a CUDA 11.8 GPU image"),
    "python313": _ENVIRONMENT.format(what="the image's Python version, 3.13"),
    # `cog debug`: the generated Dockerfile.
    "debug_secrets": _DEBUG.format(what="secret mounts in RUN lines"),
    "torch_baseimage_fallback": _DEBUG.format(what="the nvidia/cuda fallback base image"),
    "torch_cuda_baseimage": _DEBUG.format(what="the cog-base image chosen for torch 2.0.1+cu118"),
    # `cog exec` and PTYs.
    "config_subdirectory": _EXEC,
    "exec_basic": _EXEC,
    "exec_stdin_cat": _EXEC,
    "exec_stdin_unconsumed": _EXEC,
    "pty_echo": _PTY,
    "pty_interactive": _PTY,
    # OCI registries and managed weights.
    "oci_bundle_push": _REGISTRY,
    "weights_filter": _REGISTRY,
    "weights_import_predict": _REGISTRY,
    "weights_import_serve": _REGISTRY,
    "weights_pull": _REGISTRY,
    "weights_pull_predict": _REGISTRY,
    "weights_pull_serve": _REGISTRY,
    # Cog's wheels.
    "wheel_coglet_missing": _WHEEL,
    "wheel_resolution": _WHEEL,
    # A limitation of Cog's static schema generator, not a behaviour.
    "static_schema_unresolvable_fails": (
        "asserts that Cog's static (tree-sitter) schema parser cannot resolve a type exported by a package "
        "__init__.py and fails the image build; cocina derives the schema by importing predict.py, so the type "
        "resolves"
    ),
}

# Tests that must not run at the same time as one another: in Cog each test has its own container (its own
# network), here they share the host's. Each value names the shared resource.
EXCLUSIVE: dict[str, str] = {
    "setup_subprocess_double_fork_http": "127.0.0.1:7777",
    "setup_worker_tracing_logs": "127.0.0.1:7777",
}
