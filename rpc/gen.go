// Package rpc holds the protobuf definitions (ocpb: public API, cmdpb:
// replicated commands and records), the gRPC server and the Go client.
//
// Regenerate the protobuf code (needs protoc, protoc-gen-go and
// protoc-gen-go-grpc on PATH; see scripts/genproto.sh) with:
//
//	go generate ./rpc/
package rpc

//go:generate ../scripts/genproto.sh
