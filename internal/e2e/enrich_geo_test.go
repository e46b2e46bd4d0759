package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdhq/herd/collector/enrich"
	"github.com/herdhq/herd/collector/enrich/enrichtest"
	"github.com/herdhq/herd/internal/herdtest"
)

// TestGeo looks addresses up in a database built here, then replaces the
// file under the running collector.
func TestGeo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	city, asn := filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")
	enrichtest.WriteCity(t, city, map[string]enrichtest.Place{
		"81.2.69.0/24":   {Country: "GB", RegionCode: "ENG", Region: "England", City: "London"},
		"89.160.20.0/24": {Country: "SE", RegionCode: "E", Region: "Östergötland", City: "Linköping"},
		"2a02:ec0::/29":  {Country: "DE", RegionCode: "BE", Region: "Berlin", City: "Berlin"},
	})
	enrichtest.WriteASN(t, asn, map[string]uint32{"81.2.69.0/24": 20712}, "Andrews & Arnold Ltd")
	p := herdtest.Start(t, herdtest.Options{Collector: withEnricher(t, enrich.Config{GeoIPDB: city, ASNDB: asn, ReloadEvery: 50 * time.Millisecond}, nil)})

	n := 0
	send := func(ip string) string {
		t.Helper()
		n++
		id := fmt.Sprintf("geo-%03d", n)
		ev := map[string]any{"type": "track", "event": "geo", "userId": "u", "messageId": id, "context": map[string]any{"ip": ip}}
		if r := post(t, p.URL+"/v1/track", jsonBody(t, ev), map[string]string{"Authorization": basic(p.Server.WriteKey), "Content-Type": "application/json"}); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.RawBody)
		}
		waitEvents(t, p, id, 1)
		return id
	}
	geo := func(id string) string {
		return column(t, p, "concat_ws('|', country, region, city, asn, as_org)", id)
	}
	cases := []struct{ ip, want string }{
		{"81.2.69.142", "GB|England|London|20712|Andrews & Arnold Ltd"},
		{"89.160.20.112", "SE|Östergötland|Linköping"},
		{"2a02:ec0::1", "DE|Berlin|Berlin"},
		{"8.8.8.8", ""}, // not in the database: NULLs
	}
	for _, c := range cases {
		if got := geo(send(c.ip)); got != c.want {
			t.Errorf("%s: geo %q, want %q", c.ip, got, c.want)
		}
	}
	enrichtest.WriteCity(t, city, map[string]enrichtest.Place{
		"81.2.69.0/24": {Country: "FR", RegionCode: "IDF", Region: "Île-de-France", City: "Paris"},
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := geo(send("81.2.69.142"))
		if got == "FR|Île-de-France|Paris|20712|Andrews & Arnold Ltd" {
			break
		}
		if got != cases[0].want || time.Now().After(deadline) {
			t.Fatalf("after replacing the database: %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
