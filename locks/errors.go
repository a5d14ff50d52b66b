package locks

import "errors"

var (
	// ErrUnknownCommand reports a command this binary cannot apply.
	ErrUnknownCommand = errors.New("locks: unknown command")
)
