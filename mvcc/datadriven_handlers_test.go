package mvcc

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// The handlers of TestDataDriven's commands, one per command; the DSL is
// documented on TestDataDriven.

func (env *ddEnv) handlePut(t *testing.T, d *datadriven.TestData) (string, error) {
	b, key, at := bucketArg(t, d), keyArg(t, d, "k"), tsArg(t, d, "ts")
	value := keyArg(t, d, "v")
	if d.HasArg("req") {
		req := string(keyArg(t, d, "req"))
		return "", env.write(t, func(rw ReadWriter) error { return PutWrite(rw, b, key, at, value, false, req) })
	}
	return "", env.write(t, func(rw ReadWriter) error { return PutVersion(rw, b, key, at, value) })
}

func (env *ddEnv) handleDel(t *testing.T, d *datadriven.TestData) (string, error) {
	b, key, at := bucketArg(t, d), keyArg(t, d, "k"), tsArg(t, d, "ts")
	if d.HasArg("req") {
		req := string(keyArg(t, d, "req"))
		return "", env.write(t, func(rw ReadWriter) error { return PutWrite(rw, b, key, at, nil, true, req) })
	}
	return "", env.write(t, func(rw ReadWriter) error { return PutTombstone(rw, b, key, at) })
}

func (env *ddEnv) handleWrittenBy(t *testing.T, d *datadriven.TestData) (string, error) {
	b, key, req := bucketArg(t, d), keyArg(t, d, "k"), string(keyArg(t, d, "req"))
	at := Latest
	if d.HasArg("ts") {
		at = tsArg(t, d, "ts")
	}
	version, found, err := WrittenBy(env.reader(), b, key, req, at)
	if err != nil || !found {
		return "<not found>\n", err
	}
	return "@" + fmtTS(version) + "\n", nil
}

func (env *ddEnv) handleGet(t *testing.T, d *datadriven.TestData) (string, error) {
	b, key, at := bucketArg(t, d), keyArg(t, d, "k"), tsArg(t, d, "ts")
	v, err := Get(env.reader(), b, key, at)
	if err != nil {
		return "", err
	}
	return fmtValue(v) + "\n", nil
}

func (env *ddEnv) handleScan(t *testing.T, d *datadriven.TestData) (string, error) {
	b, at := bucketArg(t, d), tsArg(t, d, "ts")
	var prefix, after []byte
	if d.HasArg("prefix") {
		prefix = keyArg(t, d, "prefix")
	}
	if d.HasArg("after") {
		after = keyArg(t, d, "after")
	}
	limit := 1000
	d.MaybeScanArgs(t, "limit", &limit)
	kvs, more, err := Scan(env.reader(), b, prefix, after, at, limit, 0)
	if err != nil {
		return "", err
	}
	return fmtScan(kvs, more), nil
}

func (env *ddEnv) handleGC(t *testing.T, d *datadriven.TestData) (string, error) {
	b, before := bucketArg(t, d), tsArg(t, d, "before")
	var n int
	err := env.write(t, func(rw ReadWriter) error {
		var err error
		n, err = GC(rw, b, before)
		return err
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("deleted %d\n", n), nil
}

func (env *ddEnv) handleDump(t *testing.T, d *datadriven.TestData) (string, error) {
	return dumpEngine(env.reader())
}

func bucketArg(t *testing.T, d *datadriven.TestData) Bucket {
	var b uint16
	d.ScanArgs(t, "b", &b)
	return Bucket(b)
}

func keyArg(t *testing.T, d *datadriven.TestData, name string) []byte {
	var s string
	d.ScanArgs(t, name, &s)
	k, err := parseKey(s)
	if err != nil {
		t.Fatalf("%s: %v", d.Pos, err)
	}
	return k
}

func tsArg(t *testing.T, d *datadriven.TestData, name string) ts.Timestamp {
	var s string
	d.ScanArgs(t, name, &s)
	at, err := parseTS(s)
	if err != nil {
		t.Fatalf("%s: %v", d.Pos, err)
	}
	return at
}
