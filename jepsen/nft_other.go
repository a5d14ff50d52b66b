//go:build !linux

package jepsen

import "fmt"

// NewNFTNet fails with ErrNoPartitions: nftables is Linux's.
func NewNFTNet() (Net, error) {
	return nil, fmt.Errorf("%w: nftables needs Linux", ErrNoPartitions)
}
