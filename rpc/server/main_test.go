package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaks a goroutine (house rule 13):
// every gRPC server, connection and stream a test opens must be closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
