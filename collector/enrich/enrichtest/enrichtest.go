// Package enrichtest builds small MaxMind-format databases for tests, so
// that geo enrichment is tested against files of the real format without
// shipping MaxMind's data.
package enrichtest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Place is what a City database says about a network.
type Place struct {
	Country, RegionCode, Region, City string
}

// WriteCity writes a GeoLite2-City style database mapping each CIDR to its
// place. The file is written next to path and renamed over it, as database
// updaters do, so a reader never sees half a file.
func WriteCity(t testing.TB, path string, places map[string]Place) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-City", RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, p := range places {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{
			"country": mmdbtype.Map{"iso_code": mmdbtype.String(p.Country), "names": mmdbtype.Map{"en": mmdbtype.String(p.Country)}},
			"city":    mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(p.City), "de": mmdbtype.String(p.City + " (de)")}},
			"subdivisions": mmdbtype.Slice{mmdbtype.Map{
				"iso_code": mmdbtype.String(p.RegionCode), "names": mmdbtype.Map{"en": mmdbtype.String(p.Region)},
			}},
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatalf("insert %s: %v", cidr, err)
		}
	}
	write(t, path, tree)
}

// WriteASN writes a GeoLite2-ASN style database.
func WriteASN(t testing.TB, path string, nets map[string]uint32, org string) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-ASN", RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, asn := range nets {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(asn),
			"autonomous_system_organization": mmdbtype.String(org),
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatalf("insert %s: %v", cidr, err)
		}
	}
	write(t, path, tree)
}

func write(t testing.TB, path string, tree *mmdbwriter.Tree) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mmdb-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(tmp); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}
