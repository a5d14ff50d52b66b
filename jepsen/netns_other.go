//go:build !linux

package jepsen

import (
	"context"
	"fmt"
	"io"
)

// InPrivateNetNS reports false: private network namespaces are Linux's.
func InPrivateNetNS() bool { return false }

// RunInPrivateNetNS fails with ErrNoNetNS: private network namespaces
// are Linux's.
func RunInPrivateNetNS(context.Context, string, []string, io.Reader, io.Writer, io.Writer) (int, error) {
	return 0, fmt.Errorf("%w: network namespaces need Linux", ErrNoNetNS)
}

// PreparePrivateNetNS fails with ErrNoNetNS.
func PreparePrivateNetNS() error {
	return fmt.Errorf("%w: network namespaces need Linux", ErrNoNetNS)
}
