package bucket

import "testing"

// TestOfIsStable pins the function: a change would move every key of
// every existing cluster to another bucket.
func TestOfIsStable(t *testing.T) {
	for _, c := range []struct {
		key  string
		n    int
		want int
	}{
		{"", 64, 25},
		{"Balance:4587", 64, 10},
		{"UpdateBalance:4587", 64, 2},
		{"", 4096, 2457},
		{"Balance:4587", 4096, 74},
		{"UpdateBalance:4587", 4096, 3266},
		{"anything", 1, 0},
	} {
		if got := Of([]byte(c.key), c.n); got != c.want {
			t.Errorf("Of(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
}
