package mvcc

import (
	"bytes"
	"slices"
	"strings"

	"github.com/opencluster/opencluster/mvcc/ts"
)

// model is a naive in-memory MVCC store: the specification TestDifferential
// checks the engine against. It follows doc.go literally (invariants 2 and
// 4) with no cleverness: maps, sorting and linear search.
type model map[Bucket]map[string][]modelVersion

// modelVersion is one version of a key.
type modelVersion struct {
	at        ts.Timestamp
	value     []byte
	tombstone bool
}

func (m model) write(b Bucket, key []byte, at ts.Timestamp, value []byte, tombstone bool) {
	if m[b] == nil {
		m[b] = map[string][]modelVersion{}
	}
	vs := m[b][string(key)]
	// A write at an existing timestamp replaces that version.
	vs = slices.DeleteFunc(vs, func(v modelVersion) bool { return v.at == at })
	vs = append(vs, modelVersion{at: at, value: slices.Clone(value), tombstone: tombstone})
	// Newest first.
	slices.SortFunc(vs, func(x, y modelVersion) int { return -cmpTS(x.at, y.at) })
	m[b][string(key)] = vs
}

func cmpTS(x, y ts.Timestamp) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// get returns the newest version of key at or below at.
func (m model) get(b Bucket, key []byte, at ts.Timestamp) Value {
	for _, v := range m[b][string(key)] {
		if v.at > at {
			continue
		}
		if v.tombstone {
			return Value{Version: v.at}
		}
		return Value{Bytes: slices.Clone(v.value), Version: v.at, Found: true}
	}
	return Value{}
}

// keys returns bucket b's keys that have any version, in byte order.
func (m model) keys(b Bucket) [][]byte {
	var ks [][]byte
	for k := range m[b] {
		ks = append(ks, []byte(k))
	}
	slices.SortFunc(ks, bytes.Compare)
	return ks
}

// scan is Scan's specification: keys with prefix, after startAfter, visible
// at at, at most limit of them; more if a further one exists.
func (m model) scan(b Bucket, prefix, startAfter []byte, at ts.Timestamp, limit int) ([]KV, bool) {
	var kvs []KV
	for _, k := range m.keys(b) {
		if !bytes.HasPrefix(k, prefix) || (startAfter != nil && bytes.Compare(k, startAfter) <= 0) {
			continue
		}
		v := m.get(b, k, at)
		if !v.Found {
			continue
		}
		if len(kvs) == limit {
			return kvs, true
		}
		kvs = append(kvs, KV{Key: k, Value: v.Bytes, Version: v.Version})
	}
	return kvs, false
}

// gc is invariant 4 read literally: keep every version above before and the
// newest version at or below it unless that one is a tombstone.
func (m model) gc(b Bucket, before ts.Timestamp) int {
	deleted := 0
	for k, vs := range m[b] {
		var keep []modelVersion
		seenBase := false
		for _, v := range vs {
			switch {
			case v.at > before:
				keep = append(keep, v)
			case !seenBase:
				seenBase = true
				if !v.tombstone {
					keep = append(keep, v)
				} else {
					deleted++
				}
			default:
				deleted++
			}
		}
		if len(keep) == 0 {
			delete(m[b], k)
		} else {
			m[b][k] = keep
		}
	}
	return deleted
}

// String prints the model like dump prints the engine.
func (m model) String() string {
	var sb strings.Builder
	var bs []Bucket
	for b := range m {
		bs = append(bs, b)
	}
	slices.Sort(bs)
	for _, b := range bs {
		for _, k := range m.keys(b) {
			for _, v := range m[b][string(k)] {
				val := fmtKey(v.value)
				if v.tombstone {
					val = "<tombstone>"
				}
				sb.WriteString("b=" + fmtBucket(b) + " d " + fmtKey(k) + " @" + fmtTS(v.at) + " -> " + val + "\n")
			}
		}
	}
	return sb.String()
}
