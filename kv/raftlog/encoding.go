package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/opencluster/opencluster/mvcc"
)

// The kind bytes of a group's keys (mvcc.RaftKey).
const (
	kindEntry     = mvcc.RaftEntryKind // raftpb.Entry at an index
	kindHardState = 'h'                // raftpb.HardState
	kindTrunc     = 's'                // raftpb.SnapshotMetadata: truncated state and ConfState
	kindApplied   = 'a'                // applied index, 8 bytes big-endian
)

func entryKey(group uint32, index uint64) []byte {
	return mvcc.RaftKey(group, kindEntry, index)
}

// entrySpan returns the span [start, end) holding every entry key of
// group: entry keys are 'r' group 'e' index, and end is 'r' group 'f', the
// next kind.
func entrySpan(group uint32) (start, end []byte) {
	return entryKey(group, 0), mvcc.RaftKey(group, kindEntry+1, 0)
}

// get returns a copy of the value at key, or ok=false if there is none.
func get(r mvcc.Reader, key []byte) (v []byte, ok bool, err error) {
	val, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v = append([]byte(nil), val...)
	return v, true, closer.Close()
}

// getProto reads the message at key into m, reporting whether it exists.
func getProto(r mvcc.Reader, key []byte, m proto.Message) (bool, error) {
	v, ok, err := get(r, key)
	if err != nil || !ok {
		return false, err
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return false, fmt.Errorf("%w: key %x: %w", ErrCorrupt, key, err)
	}
	return true, nil
}

// getApplied reads the applied index.
func getApplied(r mvcc.Reader, group uint32) (uint64, bool, error) {
	key := mvcc.RaftKey(group, kindApplied, 0)
	v, ok, err := get(r, key)
	if err != nil || !ok {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: applied index %x at key %x", ErrCorrupt, v, key)
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// getEntry reads the entry at index i.
func getEntry(r mvcc.Reader, group uint32, i uint64) (*raftpb.Entry, error) {
	e := new(raftpb.Entry)
	ok, err := getProto(r, entryKey(group, i), e)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: group %d: entry %d missing", ErrCorrupt, group, i)
	}
	if e.GetIndex() != i {
		return nil, fmt.Errorf("%w: group %d: entry at %d has index %d", ErrCorrupt, group, i, e.GetIndex())
	}
	return e, nil
}

// setProto stages m at key, marshalling it straight into the batch.
func setProto(b *pebble.Batch, key []byte, m proto.Message) error {
	return setProtoSized(b, key, m, proto.Size(m))
}

// setProtoSized is setProto for an m whose proto.Size, size, was just
// computed (and cached in m).
func setProtoSized(b *pebble.Batch, key []byte, m proto.Message, size int) error {
	op := b.SetDeferred(len(key), size)
	copy(op.Key, key)
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(op.Value[:0:size], m)
	if err != nil {
		return fmt.Errorf("raftlog: marshal %T: %w", m, err)
	}
	if len(out) != size || (size > 0 && &out[0] != &op.Value[0]) {
		panic(fmt.Sprintf("raftlog: %T marshalled to %d bytes, proto.Size said %d", m, len(out), size))
	}
	return op.Finish()
}

// setApplied stages the applied index.
func setApplied(b *pebble.Batch, group uint32, index uint64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], index)
	return b.Set(mvcc.RaftKey(group, kindApplied, 0), v[:], nil)
}

// ReadSnapshotMetadata returns the metadata of the state machine as of the
// applied index of group, read from r: Index is the applied index, Term
// its entry's term, ConfState the stored ConfState. The snapshot sender
// reads it from the Pebble snapshot it streams the bucket span from, so the
// metadata matches the data (the state machine's writes and the applied
// index are committed in one batch). It is safe for concurrent use with the
// group's Storage when r is a *pebble.Snapshot or the *pebble.DB. It
// returns ErrNotInitialized for a group that was never bootstrapped.
func ReadSnapshotMetadata(r mvcc.Reader, group uint32) (*raftpb.SnapshotMetadata, error) {
	m := new(raftpb.SnapshotMetadata)
	ok, err := getProto(r, mvcc.RaftKey(group, kindTrunc, 0), m)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: group %d", ErrNotInitialized, group)
	}
	applied, ok, err := getApplied(r, group)
	if err != nil {
		return nil, err
	}
	if !ok || applied < m.GetIndex() {
		return nil, fmt.Errorf("%w: group %d: applied index %d (present %t) below truncated index %d",
			ErrCorrupt, group, applied, ok, m.GetIndex())
	}
	term := m.GetTerm()
	if applied > m.GetIndex() {
		e, err := getEntry(r, group, applied)
		if err != nil {
			return nil, err
		}
		term = e.GetTerm()
	}
	return &raftpb.SnapshotMetadata{
		ConfState: raftpb.EnsureConfState(m.GetConfState()),
		Index:     new(applied),
		Term:      new(term),
	}, nil
}
