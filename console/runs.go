package console

import (
	"net/http"
	"sync"
)

// runSlots bounds the saved-query runs in flight (each holds a Postgres
// connection of herd's for as long as the query runs): per user and in
// all. A run past either bound is refused at once, not queued.
type runSlots struct {
	perUser, total int
	mu             sync.Mutex
	n              int
	byUser         map[string]int
}

func newRunSlots(perUser, total int) *runSlots {
	return &runSlots{perUser: perUser, total: total, byUser: map[string]int{}}
}

// acquire takes a slot for user, or answers 429 (this user's runs) or 503
// (everyone's). release gives it back.
func (r *runSlots) acquire(user string) (release func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byUser[user] >= r.perUser {
		return nil, errorf(http.StatusTooManyRequests, "you have %d saved queries running, the most at once: wait for one to finish", r.perUser)
	}
	if r.n >= r.total {
		return nil, errorf(http.StatusServiceUnavailable, "%d saved queries are running, the console's limit: try again in a moment", r.total)
	}
	r.n++
	r.byUser[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.n--
			if r.byUser[user]--; r.byUser[user] <= 0 {
				delete(r.byUser, user)
			}
		})
	}, nil
}
