package mvcc

import "errors"

var (
	// ErrBadKey reports an engine key that does not decode.
	ErrBadKey = errors.New("mvcc: malformed engine key")
	// ErrBadValue reports a stored value that does not decode.
	ErrBadValue = errors.New("mvcc: malformed stored value")
)
