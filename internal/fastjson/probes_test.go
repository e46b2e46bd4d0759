package fastjson

type probe0 struct {
	A0 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe1 struct {
	A1 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe2 struct {
	A2 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe3 struct {
	A3 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe4 struct {
	A4 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe5 struct {
	A5 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe6 struct {
	A6 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe7 struct {
	A7 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe8 struct {
	A8 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe9 struct {
	A9 string `json:"a"`
	B  *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe10 struct {
	A10 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe11 struct {
	A11 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe12 struct {
	A12 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe13 struct {
	A13 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe14 struct {
	A14 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe15 struct {
	A15 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe16 struct {
	A16 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe17 struct {
	A17 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe18 struct {
	A18 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe19 struct {
	A19 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe20 struct {
	A20 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe21 struct {
	A21 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe22 struct {
	A22 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe23 struct {
	A23 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe24 struct {
	A24 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe25 struct {
	A25 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe26 struct {
	A26 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe27 struct {
	A27 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe28 struct {
	A28 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe29 struct {
	A29 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe30 struct {
	A30 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe31 struct {
	A31 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe32 struct {
	A32 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe33 struct {
	A33 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe34 struct {
	A34 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe35 struct {
	A35 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe36 struct {
	A36 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe37 struct {
	A37 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe38 struct {
	A38 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe39 struct {
	A39 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe40 struct {
	A40 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe41 struct {
	A41 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe42 struct {
	A42 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe43 struct {
	A43 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe44 struct {
	A44 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe45 struct {
	A45 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe46 struct {
	A46 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe47 struct {
	A47 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe48 struct {
	A48 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe49 struct {
	A49 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe50 struct {
	A50 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe51 struct {
	A51 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe52 struct {
	A52 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe53 struct {
	A53 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe54 struct {
	A54 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe55 struct {
	A55 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe56 struct {
	A56 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe57 struct {
	A57 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe58 struct {
	A58 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe59 struct {
	A59 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe60 struct {
	A60 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe61 struct {
	A61 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe62 struct {
	A62 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}
type probe63 struct {
	A63 string `json:"a"`
	B   *struct {
		C []int `json:"c"`
	} `json:"b"`
	D map[string]RawMessage `json:"d"`
}

// probes returns, for each type, a function that decodes into a new value of it.
func probes() []func([]byte) error {
	return []func([]byte) error{
		func(b []byte) error { return decode(b, new(probe0)) },
		func(b []byte) error { return decode(b, new(probe1)) },
		func(b []byte) error { return decode(b, new(probe2)) },
		func(b []byte) error { return decode(b, new(probe3)) },
		func(b []byte) error { return decode(b, new(probe4)) },
		func(b []byte) error { return decode(b, new(probe5)) },
		func(b []byte) error { return decode(b, new(probe6)) },
		func(b []byte) error { return decode(b, new(probe7)) },
		func(b []byte) error { return decode(b, new(probe8)) },
		func(b []byte) error { return decode(b, new(probe9)) },
		func(b []byte) error { return decode(b, new(probe10)) },
		func(b []byte) error { return decode(b, new(probe11)) },
		func(b []byte) error { return decode(b, new(probe12)) },
		func(b []byte) error { return decode(b, new(probe13)) },
		func(b []byte) error { return decode(b, new(probe14)) },
		func(b []byte) error { return decode(b, new(probe15)) },
		func(b []byte) error { return decode(b, new(probe16)) },
		func(b []byte) error { return decode(b, new(probe17)) },
		func(b []byte) error { return decode(b, new(probe18)) },
		func(b []byte) error { return decode(b, new(probe19)) },
		func(b []byte) error { return decode(b, new(probe20)) },
		func(b []byte) error { return decode(b, new(probe21)) },
		func(b []byte) error { return decode(b, new(probe22)) },
		func(b []byte) error { return decode(b, new(probe23)) },
		func(b []byte) error { return decode(b, new(probe24)) },
		func(b []byte) error { return decode(b, new(probe25)) },
		func(b []byte) error { return decode(b, new(probe26)) },
		func(b []byte) error { return decode(b, new(probe27)) },
		func(b []byte) error { return decode(b, new(probe28)) },
		func(b []byte) error { return decode(b, new(probe29)) },
		func(b []byte) error { return decode(b, new(probe30)) },
		func(b []byte) error { return decode(b, new(probe31)) },
		func(b []byte) error { return decode(b, new(probe32)) },
		func(b []byte) error { return decode(b, new(probe33)) },
		func(b []byte) error { return decode(b, new(probe34)) },
		func(b []byte) error { return decode(b, new(probe35)) },
		func(b []byte) error { return decode(b, new(probe36)) },
		func(b []byte) error { return decode(b, new(probe37)) },
		func(b []byte) error { return decode(b, new(probe38)) },
		func(b []byte) error { return decode(b, new(probe39)) },
		func(b []byte) error { return decode(b, new(probe40)) },
		func(b []byte) error { return decode(b, new(probe41)) },
		func(b []byte) error { return decode(b, new(probe42)) },
		func(b []byte) error { return decode(b, new(probe43)) },
		func(b []byte) error { return decode(b, new(probe44)) },
		func(b []byte) error { return decode(b, new(probe45)) },
		func(b []byte) error { return decode(b, new(probe46)) },
		func(b []byte) error { return decode(b, new(probe47)) },
		func(b []byte) error { return decode(b, new(probe48)) },
		func(b []byte) error { return decode(b, new(probe49)) },
		func(b []byte) error { return decode(b, new(probe50)) },
		func(b []byte) error { return decode(b, new(probe51)) },
		func(b []byte) error { return decode(b, new(probe52)) },
		func(b []byte) error { return decode(b, new(probe53)) },
		func(b []byte) error { return decode(b, new(probe54)) },
		func(b []byte) error { return decode(b, new(probe55)) },
		func(b []byte) error { return decode(b, new(probe56)) },
		func(b []byte) error { return decode(b, new(probe57)) },
		func(b []byte) error { return decode(b, new(probe58)) },
		func(b []byte) error { return decode(b, new(probe59)) },
		func(b []byte) error { return decode(b, new(probe60)) },
		func(b []byte) error { return decode(b, new(probe61)) },
		func(b []byte) error { return decode(b, new(probe62)) },
		func(b []byte) error { return decode(b, new(probe63)) },
	}
}
