#!/usr/bin/env bash
# Regenerates onnx.pb.swift from the onnx.proto that ships in the onnx pip package (onnx 1.23.2,
# pinned in training/requirements.txt). onnx.proto, not onnx-ml.proto: torch's exporter writes no
# ONNX-ML types, and unknown fields survive parsing either way.
#
# protoc-gen-swift must match the swift-protobuf version in Package.swift (1.39.0). Building it
# takes minutes, so the generated file is committed and CI never runs this script:
#   git clone /opt/swift-packages/apple/swift-protobuf.git /tmp/swift-protobuf   # or GitHub
#   git -C /tmp/swift-protobuf checkout 1.39.0
#   (cd /tmp/swift-protobuf && swift build -c release --product protoc-gen-swift)
#   PROTOC_GEN_SWIFT=/tmp/swift-protobuf/.build/release/protoc-gen-swift \
#     Sources/PurifyEngine/ONNX/regenerate.sh
#
# The command it runs:
#   protoc --plugin=protoc-gen-swift=$PROTOC_GEN_SWIFT --swift_opt=Visibility=Internal \
#     --proto_path=$ONNX_DIR --swift_out=Sources/PurifyEngine/ONNX $ONNX_DIR/onnx.proto
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
onnx_dir="${ONNX_DIR:-$("$python" -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')}"
plugin="${PROTOC_GEN_SWIFT:-/tmp/swift-protobuf/.build/release/protoc-gen-swift}"
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Internal \
    --proto_path="$onnx_dir" --swift_out="$here" "$onnx_dir/onnx.proto"
