//go:build tools

// Package tools pins the etcd server release that `opencluster bench`
// builds and measures (see ../doc.go). It is never compiled: the bench runs
// `go build go.etcd.io/etcd/server/v3` in this module, so the versions in
// go.mod and the hashes in go.sum decide exactly what is built.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
