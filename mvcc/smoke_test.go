package mvcc

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// TestSmokeReadAtTimestamp is a first check that the engine opens with the
// cockroachkvs comparer and that reads pick the newest version <= ts.
func TestSmokeReadAtTimestamp(t *testing.T) {
	e, err := Open("", Config{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	b := e.NewBatch()
	must(t, PutVersion(b, 3, []byte("k"), 10, []byte("v10")))
	must(t, PutVersion(b, 3, []byte("k"), 20, []byte("v20")))
	must(t, PutTombstone(b, 3, []byte("k"), 30))
	must(t, PutVersion(b, 3, []byte("k2"), 5, []byte("other")))
	must(t, b.Commit(nil))
	for _, tc := range []struct {
		at    uint64
		want  string
		found bool
	}{{5, "", false}, {10, "v10", true}, {25, "v20", true}, {30, "", false}, {uint64(Latest), "", false}} {
		v, err := Get(e.DB(), 3, []byte("k"), tsOf(tc.at))
		must(t, err)
		if v.Found != tc.found || string(v.Bytes) != tc.want {
			t.Errorf("Get at %d = %q found=%v; want %q found=%v", tc.at, v.Bytes, v.Found, tc.want, tc.found)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tsOf(v uint64) tsT { return tsT(v) }

type tsT = ts.Timestamp
