#!/usr/bin/env bash
# The demo tour (`make demo`): fetch Fashion-MNIST, train SimpleNet, evaluate, explain (saliency; then saliency,
# SmoothGrad, Integrated Gradients and Grad-CAM side by side, with their sanity check and faithfulness curves),
# attack (PGD), sweep its robustness (accuracy against eps and PGD steps), its accuracy under common corruptions,
# certify it (randomized smoothing), compare the custom and the native convolution, write the HTML report; then print
# where each stage's time went and the report's path.
#
#   scripts/demo.sh [VISIONLAB] [RUN_DIR]     (defaults: .venv/bin/visionlab, runs/demo-<date>-<time>)
#
# Each run writes a new directory, so an earlier demo's results are never overwritten.
set -euo pipefail
VL=${1:-.venv/bin/visionlab}
RUN=${2:-runs/demo-$(date +%Y%m%d-%H%M%S)}
CKPT=$RUN/model_best.pth.tar
declare -a STAGES=()
# The convolution comparison: the demo recipe shortened (3 epochs of 8,000 images, validated on 2,000), trained
# once with each convolution into RUN/conv/, where the report finds the pair; the full run twice would double the
# tour's longest stage.
CONV_FLAGS=(--data fashion-mnist --model simplenet --epochs 3 --limit-train 8000 --limit-val 2000 --no-tensorboard)

stage() {  # stage NAME COMMAND...: run it, remember its wall time
    local name=$1 start end
    shift
    echo "== $name: $*" >&2
    start=$(date +%s%N)
    "$@"
    end=$(date +%s%N)
    STAGES+=("$name $(((end - start) / 1000000))")  # milliseconds
}

conv_pair() {
    "$VL" train "${CONV_FLAGS[@]}" --out "$RUN/conv/native"
    "$VL" train "${CONV_FLAGS[@]}" --use-custom-conv --out "$RUN/conv/custom"
}

stage fetch "$VL" data fetch fashion-mnist
# --channels-last: oneDNN's NHWC kernels train SimpleNet 1.4x faster on AVX-512 and 1.6x on the AVX2 kernels a CPU
# without AVX-512 runs, to the same accuracy (90.72 % and 90.43 %; NCHW 90.47 % and 90.58 %; BENCHMARKS.md).
stage train "$VL" train --data fashion-mnist --model simplenet --channels-last --out "$RUN"
stage eval "$VL" eval --resume "$CKPT"
stage saliency "$VL" saliency --resume "$CKPT" --num 20
# Small on purpose: the four methods on 10 images (IG: 16 nodes, SmoothGrad: 10 noisy copies), then their sanity
# check and deletion/insertion curves on a seeded 50 of the test images. Work, counted on a 4-image run: the cascade
# recomputes the maps 8 + 2 times (SimpleNet's 8 layers, the trained model twice) at 28 gradient passes an image,
# ~14,000 image gradients; the curves ~14,000 forward passes (6 orderings x 2 curves x 21 steps, and the maps):
# about 10 s at SimpleNet's ~2,000 training images/s, 20 s on a CPU without AVX-512 (estimated, not timed).
stage explain "$VL" explain --resume "$CKPT" --num 10 --smoothgrad-samples 10 --ig-steps 16 --sanity --faithfulness \
    --subset 50 --curve-steps 20
stage attack "$VL" attack --resume "$CKPT" --attack pgd --eps 0.1 --steps 10 --limit-val 1000 -v
# Small on purpose: 500 images, PGD-10 at five radii, then 1-10 steps at eps 0.05, where the steps still matter.
stage robustness "$VL" robustness --resume "$CKPT" --eps 0 0.025 0.05 0.1 0.2 --steps 1 2 5 10 --at-eps 0.05 \
    --limit-val 500
# Small on purpose: the 15 corruptions at severities 1, 3 and 5 on 500 images.
stage corruptions "$VL" corruptions --resume "$CKPT" --severities 1 3 5 --limit-val 500
# Small on purpose too: 100 images, 1,100 noisy copies each, at Cohen et al.'s smallest sigma (the demo model is not
# trained with noise; `visionlab train --noise-sigma 0.12` would be).
stage certify "$VL" certify --resume "$CKPT" --sigma 0.12 --n0 100 --n 1000 --limit-val 100
stage conv conv_pair
stage report "$VL" report "$RUN" --out "$RUN/report.html"

echo
echo "demo stages (seconds):"
total=0
for entry in "${STAGES[@]}"; do
    read -r name ms <<<"$entry"
    printf '  %-10s %5d.%d\n' "$name" $((ms / 1000)) $((ms % 1000 / 100))
    total=$((total + ms))
done
printf '  %-10s %5d.%d\n' total $((total / 1000)) $((total % 1000 / 100))
echo
echo "report: $RUN/report.html   (open it in any browser, e.g. xdg-open $RUN/report.html; it works offline)"
