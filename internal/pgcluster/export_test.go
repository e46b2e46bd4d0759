package pgcluster

// SetBeforePassword makes secureOffline call f while its server trusts,
// until the test ends (restore).
func SetBeforePassword(f func(*Cluster)) (restore func()) {
	beforePassword = f
	return func() { beforePassword = nil }
}
