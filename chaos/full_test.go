//go:build chaos

package chaos

import "testing"

// TestChaosFull is make chaos: more load, more kills, longer outages.
func TestChaosFull(t *testing.T) {
	runSuite(t, fullProfile)
}
