#!/usr/bin/env bash
# Regenerates the committed protobuf code. Tools:
#   apt-get install protobuf-compiler
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"
for dir in rpc/ocpb rpc/cmdpb; do
  protoc -I "$dir" -I rpc/ocpb -I /usr/include \
    --go_out=paths=source_relative:"$dir" \
    --go-grpc_out=paths=source_relative:"$dir" \
    "$dir"/*.proto
done
