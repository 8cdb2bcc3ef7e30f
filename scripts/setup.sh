#!/bin/sh
# Set up a fresh machine for skdeploy development: Debian packages, then .venv with every extra.
# Idempotent: a second run only checks. Called by `make demo` and `make test`.
set -eu
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# dataset-fashion-mnist: real labelled images (demo model, calibration, validation);
# chromium + fonts: the HTML validation report is checked in a real headless browser;
# gcc: the TensorRT contract test builds stub libraries for the real binding wheels.
missing=""
for pkg in dataset-fashion-mnist chromium fonts-dejavu-core gcc; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
# torch 2.14.1 + torchvision 0.29.1 is the pair timm works with here.
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 -e '.[export,calib,rtx,timm,dev]'
.venv/bin/skdeploy --version
