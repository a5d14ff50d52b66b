package client

import (
	"context"
	"time"

	"github.com/opencluster/opencluster/rpc/ocpb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// KeyValue is a key, its value and the version at which the value was
// committed.
type KeyValue struct {
	Key     []byte
	Value   []byte
	Version uint64
}

// BatchGetResult is the answer of BatchGet.
type BatchGetResult struct {
	// Version is the snapshot every result was read at.
	Version uint64
	// Items has one entry per requested key, in request order.
	Items []BatchGetItem
}

// BatchGetItem is one key of a BatchGet.
type BatchGetItem struct {
	KeyValue
	// Found is false when the key does not exist at the snapshot.
	Found bool
}

func durationOf(w *time.Duration) *durationpb.Duration {
	if w == nil {
		return nil
	}
	return durationpb.New(*w)
}

func kvOf(kv *ocpb.KeyValue) KeyValue {
	if kv == nil {
		return KeyValue{}
	}
	return KeyValue{Key: kv.Key, Value: kv.Value, Version: kv.Version}
}

func collectWrite(opts []WriteOption) writeOptions {
	var o writeOptions
	for _, opt := range opts {
		opt.applyWrite(&o)
	}
	if o.requestID == "" {
		o.requestID = newRequestID()
	}
	return o
}

func collectRead(opts []ReadOption) readOptions {
	var o readOptions
	for _, opt := range opts {
		opt.applyRead(&o)
	}
	return o
}

// Put writes value under key and returns the write's version (0 for a
// provisional write under a restrictive lock, WithCode).
func (c *Client) Put(ctx context.Context, key, value []byte, opts ...WriteOption) (uint64, error) {
	o := collectWrite(opts)
	req := &ocpb.PutRequest{Key: key, Value: value, Code: o.code, Fence: o.fence, RequestId: o.requestID, Wait: durationOf(o.wait)}
	var resp *ocpb.PutResponse
	err := c.doKey(ctx, "Put", key, waitOf(o.wait), func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.kv.Put(ctx, req)
		req.Retry = true // a resend may find this attempt applied
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.Version, nil
}

// Get reads the newest committed value of key (linearizable), or its value
// at a snapshot (AtVersion), or the caller's own provisional value
// (WithReadCode). A missing key is an error matching ErrNotFound.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) (KeyValue, error) {
	o := collectRead(opts)
	req := &ocpb.GetRequest{Key: key, Code: o.code, Version: o.version, Wait: durationOf(o.wait)}
	var resp *ocpb.GetResponse
	err := c.doKey(ctx, "Get", key, waitOf(o.wait), func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.kv.Get(ctx, req)
		return err
	})
	if err != nil {
		return KeyValue{}, err
	}
	return kvOf(resp.Kv), nil
}

// Delete deletes key and returns the deletion's version. Deleting a missing
// key succeeds.
func (c *Client) Delete(ctx context.Context, key []byte, opts ...WriteOption) (uint64, error) {
	o := collectWrite(opts)
	req := &ocpb.DeleteRequest{Key: key, Code: o.code, Fence: o.fence, RequestId: o.requestID, Wait: durationOf(o.wait)}
	var resp *ocpb.DeleteResponse
	err := c.doKey(ctx, "Delete", key, waitOf(o.wait), func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.kv.Delete(ctx, req)
		req.Retry = true // a resend may find this attempt applied
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.Version, nil
}

// CAS writes value under key only if the key's current version is
// expectedVersion (0: the key must not exist). It returns whether the swap
// happened and the key's value afterwards: the new value and version on
// success, the current one on failure (Version 0 when the key does not
// exist). A failed comparison is not an error. CAS takes WithWait and
// WithRequestID; WithCode and WithFence are invalid.
func (c *Client) CAS(ctx context.Context, key, value []byte, expectedVersion uint64, opts ...WriteOption) (bool, KeyValue, error) {
	return c.cas(ctx, key, value, expectedVersion, false, opts)
}

// CASDelete deletes key only if its current version is expectedVersion. It
// returns like CAS (on success the KeyValue has no value and the deletion's
// version).
func (c *Client) CASDelete(ctx context.Context, key []byte, expectedVersion uint64, opts ...WriteOption) (bool, KeyValue, error) {
	return c.cas(ctx, key, nil, expectedVersion, true, opts)
}

func (c *Client) cas(ctx context.Context, key, value []byte, expected uint64, del bool, opts []WriteOption) (bool, KeyValue, error) {
	o := collectWrite(opts)
	if o.code != "" || o.fence != nil {
		return false, KeyValue{}, invalidf("compare-and-swap takes no code or fence")
	}
	req := &ocpb.CompareAndSwapRequest{Key: key, Value: value, ExpectedVersion: expected, Delete: del, RequestId: o.requestID, Wait: durationOf(o.wait)}
	var resp *ocpb.CompareAndSwapResponse
	err := c.doKey(ctx, "CompareAndSwap", key, waitOf(o.wait), func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.kv.CompareAndSwap(ctx, req)
		req.Retry = true // a resend may find this attempt applied
		return err
	})
	if err != nil {
		return false, KeyValue{}, err
	}
	if resp.Succeeded {
		kv := KeyValue{Key: key, Version: resp.Version}
		if !del {
			kv.Value = value
		}
		return true, kv, nil
	}
	cur := kvOf(resp.Current)
	cur.Key = key
	return false, cur, nil
}

// BatchGet reads keys at one snapshot version (AtVersion, or a fresh one).
func (c *Client) BatchGet(ctx context.Context, keys [][]byte, opts ...ReadOption) (BatchGetResult, error) {
	o := collectRead(opts)
	req := &ocpb.BatchGetRequest{Keys: keys, Version: o.version, Wait: durationOf(o.wait)}
	var resp *ocpb.BatchGetResponse
	err := c.do(ctx, "BatchGet", waitOf(o.wait), func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.kv.BatchGet(ctx, req)
		return err
	})
	if err != nil {
		return BatchGetResult{}, err
	}
	res := BatchGetResult{Version: resp.Version, Items: make([]BatchGetItem, 0, len(resp.Results))}
	for _, r := range resp.Results {
		res.Items = append(res.Items, BatchGetItem{
			KeyValue: KeyValue{Key: r.Key, Value: r.Value, Version: r.Version},
			Found:    r.Found,
		})
	}
	return res, nil
}

// Scan reads up to limit keys with prefix, in key order, at one snapshot
// version (AtVersion, or a fresh one); limit 0 means the server's default
// (1000). more reports that the limit cut the result: resume with
// StartAfter(last key), and pass the same AtVersion to every page to page
// through one consistent snapshot.
func (c *Client) Scan(ctx context.Context, prefix []byte, limit int, opts ...ReadOption) (kvs []KeyValue, more bool, err error) {
	o := collectRead(opts)
	if limit < 0 || limit > 1<<31-1 {
		return nil, false, invalidf("scan limit %d out of range", limit)
	}
	req := &ocpb.ScanRequest{Prefix: prefix, StartAfter: o.startAfter, Limit: int32(limit), Version: o.version, Wait: durationOf(o.wait)}
	var resp *ocpb.ScanResponse
	err = c.do(ctx, "Scan", waitOf(o.wait), func(ctx context.Context, e *endpoint) (err error) {
		resp, err = e.kv.Scan(ctx, req)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	kvs = make([]KeyValue, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs = append(kvs, kvOf(kv))
	}
	return kvs, resp.More, nil
}
