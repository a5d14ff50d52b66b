package jepsen

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBlackBox keeps the harness black-box (package doc): besides
// libraries (internal/freeport, which picks ports and knows nothing of the
// server, is one) it may import only the client and the protos (the public
// API, and cmdpb for the test-only admin service of --test-admin servers),
// never the server's packages. Tests may also use the client's fake.
func TestBlackBox(t *testing.T) {
	const module = "github.com/opencluster/opencluster/"
	allowed := map[string]bool{
		module + "rpc/client": true, module + "rpc/ocpb": true, module + "rpc/cmdpb": true,
		module + "internal/freeport": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			testOnly := strings.HasSuffix(file, "_test.go") && path == module+"rpc/client/clienttest"
			if strings.HasPrefix(path, module) && !allowed[path] && !testOnly {
				t.Errorf("%s imports %s: the harness may use only rpc/client, rpc/ocpb and rpc/cmdpb", file, path)
			}
		}
	}
}
