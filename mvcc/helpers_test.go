package mvcc

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// newTestEngine opens an engine on an in-memory filesystem and closes it
// when the test ends.
func newTestEngine(tb testing.TB) *Engine {
	tb.Helper()
	e, err := Open("", Config{FS: vfs.NewMem()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("close engine: %v", err)
		}
	})
	return e
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// flushAndCompact moves everything into sstables and compacts the whole
// keyspace, so that reads go through the columnar blocks and the
// cockroachkvs key seeker rather than the memtable.
func flushAndCompact(tb testing.TB, e *Engine) {
	tb.Helper()
	must(tb, e.DB().Flush())
	// No engine key starts with 0xff (see the key layout in doc.go).
	must(tb, e.DB().Compact(tb.Context(), encode(nil), encode([]byte{0xff}), false))
}

// fmtKey quotes a user key (or name) Go-style, so that "a", "a\x00" and
// "ab" read apart.
func fmtKey(k []byte) string { return strconv.Quote(string(k)) }

// parseKey reads a key written Go-style without the quotes: a\x00 is "a",
// then a zero byte.
func parseKey(s string) ([]byte, error) {
	u, err := strconv.Unquote(`"` + s + `"`)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", s, err)
	}
	return []byte(u), nil
}

// parseTS reads a timestamp: a number, or "latest".
func parseTS(s string) (ts.Timestamp, error) {
	if s == "latest" {
		return Latest, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q: %w", s, err)
	}
	return ts.Timestamp(v), nil
}

// fmtTS prints a timestamp as the DSL writes it.
func fmtTS(t ts.Timestamp) string {
	if t == Latest {
		return "latest"
	}
	return strconv.FormatUint(uint64(t), 10)
}

// fmtValue prints the result of Get.
func fmtValue(v Value) string {
	switch {
	case v.Found:
		return fmt.Sprintf("%s @%s", fmtKey(v.Bytes), fmtTS(v.Version))
	case v.Version != 0:
		return fmt.Sprintf("<deleted @%s>", fmtTS(v.Version))
	default:
		return "<not found>"
	}
}

// fmtScan prints the result of Scan.
func fmtScan(kvs []KV, more bool) string {
	var sb strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&sb, "%s -> %s @%s\n", fmtKey(kv.Key), fmtKey(kv.Value), fmtTS(kv.Version))
	}
	fmt.Fprintf(&sb, "more=%t\n", more)
	return sb.String()
}

// dumpEngine prints every engine key r holds, in engine order, decoded.
func dumpEngine(r Reader) (string, error) {
	it, err := r.NewIter(nil)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	for valid := it.First(); valid; valid = it.Next() {
		sb.WriteString(fmtEngineKV(it.Key(), it.Value()))
		sb.WriteByte('\n')
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return "", err
	}
	if err := it.Close(); err != nil {
		return "", err
	}
	if sb.Len() == 0 {
		return "<empty>\n", nil
	}
	return sb.String(), nil
}

// fmtEngineKV decodes one engine key and its value for dump.
func fmtEngineKV(k, v []byte) string {
	if b, key, t, err := DecodeVersionKey(k); err == nil {
		var val string
		value, tombstone, req, err := splitValue(v)
		switch {
		case err != nil:
			val = fmt.Sprintf("<bad value %x>", v)
		case tombstone:
			val = "<tombstone>"
		default:
			val = fmtKey(value)
		}
		if err == nil && req != nil {
			val += " req " + fmtKey(req)
		}
		return fmt.Sprintf("b=%d d %s @%s -> %s", b, fmtKey(key), fmtTS(t), val)
	}
	if b, kind, name, err := DecodeRecordKey(k); err == nil {
		return fmt.Sprintf("b=%d %c %s -> %d bytes", b, kind, fmtKey(name), len(v))
	}
	return fmt.Sprintf("raw %x -> %d bytes", k, len(v))
}

func fmtBucket(b Bucket) string { return strconv.FormatUint(uint64(b), 10) }
