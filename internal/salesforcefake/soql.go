package salesforcefake

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// soql is the fake's reading of the SOQL herd sends: SELECT fields or
// COUNT(), FROM, WHERE with AND, OR, parentheses and comparisons, ORDER BY,
// LIMIT.
type soql struct {
	fields []string
	count  bool
	from   string
	where  cond
	refs   []string // fields named in WHERE and ORDER BY
	order  []orderKey
	limit  int
}

type orderKey struct {
	field string
	desc  bool
}

type cond interface{ eval(r map[string]any) bool }

type andCond []cond
type orCond []cond
type cmpCond struct {
	field, op string
	value     any
}

func (c andCond) eval(r map[string]any) bool {
	for _, x := range c {
		if !x.eval(r) {
			return false
		}
	}
	return true
}

func (c orCond) eval(r map[string]any) bool {
	for _, x := range c {
		if x.eval(r) {
			return true
		}
	}
	return false
}

func (c cmpCond) eval(r map[string]any) bool {
	v := r[c.field]
	if v == nil || c.value == nil {
		switch c.op {
		case "=":
			return v == nil && c.value == nil
		case "!=":
			return (v == nil) != (c.value == nil)
		}
		return false
	}
	n := compare(v, c.value)
	switch c.op {
	case "=":
		return n == 0
	case "!=":
		return n != 0
	case "<":
		return n < 0
	case "<=":
		return n <= 0
	case ">":
		return n > 0
	case ">=":
		return n >= 0
	}
	return false
}

// compare orders two field values of one type.
func compare(a, b any) int {
	switch x := a.(type) {
	case time.Time:
		y, _ := b.(time.Time)
		return x.Compare(y)
	case string:
		y := fmt.Sprint(b)
		return strings.Compare(x, y)
	case bool:
		y, _ := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case float64:
		y, _ := b.(float64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case nil:
		if b == nil {
			return 0
		}
		return -1
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

type soqlParser struct {
	toks []string
	i    int
	q    *soql
}

func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t':
			i++
		case c == '(' || c == ')' || c == ',':
			toks = append(toks, string(c))
			i++
		case c == '<' || c == '>' || c == '!' || c == '=':
			j := i + 1
			if j < len(s) && s[j] == '=' {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '\''; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, "'"+b.String())
			i = j + 1
		case unicode.IsLetter(rune(c)) || c == '_' || unicode.IsDigit(rune(c)):
			j := i
			for j < len(s) && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])) || strings.IndexByte("_:.+-", s[j]) >= 0) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			return nil, fmt.Errorf("unexpected token at %q", s[i:])
		}
	}
	return toks, nil
}

func parseSOQL(s string) (*soql, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &soqlParser{toks: toks, q: &soql{}}
	if err := p.parse(); err != nil {
		return nil, fmt.Errorf("%v in %q", err, s)
	}
	return p.q, nil
}

func (p *soqlParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *soqlParser) next() string { t := p.peek(); p.i++; return t }

func (p *soqlParser) expect(t string) error {
	if !strings.EqualFold(p.next(), t) {
		return fmt.Errorf("expected %s", t)
	}
	return nil
}

func (p *soqlParser) parse() error {
	if err := p.expect("SELECT"); err != nil {
		return err
	}
	if strings.EqualFold(p.peek(), "COUNT") {
		p.next()
		if p.expect("(") != nil || p.expect(")") != nil {
			return fmt.Errorf("bad COUNT()")
		}
		p.q.count = true
	} else {
		for {
			p.q.fields = append(p.q.fields, p.next())
			if p.peek() != "," {
				break
			}
			p.next()
		}
	}
	if err := p.expect("FROM"); err != nil {
		return err
	}
	p.q.from = p.next()
	if strings.EqualFold(p.peek(), "WHERE") {
		p.next()
		c, err := p.or()
		if err != nil {
			return err
		}
		p.q.where = c
	}
	if strings.EqualFold(p.peek(), "ORDER") {
		p.next()
		if err := p.expect("BY"); err != nil {
			return err
		}
		for {
			k := orderKey{field: p.next()}
			p.q.refs = append(p.q.refs, k.field)
			if u := strings.ToUpper(p.peek()); u == "ASC" || u == "DESC" {
				k.desc = u == "DESC"
				p.next()
			}
			p.q.order = append(p.q.order, k)
			if p.peek() != "," {
				break
			}
			p.next()
		}
	}
	if strings.EqualFold(p.peek(), "LIMIT") {
		p.next()
		n, err := strconv.Atoi(p.next())
		if err != nil {
			return fmt.Errorf("bad LIMIT")
		}
		p.q.limit = n
	}
	if p.peek() != "" {
		return fmt.Errorf("unexpected %q", p.peek())
	}
	return nil
}

func (p *soqlParser) or() (cond, error) {
	var c orCond
	for {
		x, err := p.and()
		if err != nil {
			return nil, err
		}
		c = append(c, x)
		if !strings.EqualFold(p.peek(), "OR") {
			break
		}
		p.next()
	}
	if len(c) == 1 {
		return c[0], nil
	}
	return c, nil
}

func (p *soqlParser) and() (cond, error) {
	var c andCond
	for {
		x, err := p.primary()
		if err != nil {
			return nil, err
		}
		c = append(c, x)
		if !strings.EqualFold(p.peek(), "AND") {
			break
		}
		p.next()
	}
	if len(c) == 1 {
		return c[0], nil
	}
	return c, nil
}

// soqlDateTime is a SOQL dateTime literal, as documented: no fraction.
var soqlDateTime = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})$`)

// soqlDateLike starts like a datetime.
var soqlDateLike = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T`)

func (p *soqlParser) primary() (cond, error) {
	if p.peek() == "(" {
		p.next()
		c, err := p.or()
		if err != nil {
			return nil, err
		}
		return c, p.expect(")")
	}
	field, op, lit := p.next(), p.next(), p.next()
	switch op {
	case "=", "!=", "<", "<=", ">", ">=":
	default:
		return nil, fmt.Errorf("bad operator %q", op)
	}
	p.q.refs = append(p.q.refs, field)
	c := cmpCond{field: field, op: op}
	switch {
	case strings.HasPrefix(lit, "'"):
		c.value = lit[1:]
	case strings.EqualFold(lit, "true"), strings.EqualFold(lit, "false"):
		c.value = strings.EqualFold(lit, "true")
	case strings.EqualFold(lit, "null"):
		c.value = nil
	default:
		if soqlDateTime.MatchString(lit) {
			t, err := time.Parse(time.RFC3339, lit)
			if err != nil {
				return nil, fmt.Errorf("bad datetime %q", lit)
			}
			c.value = t
		} else if soqlDateLike.MatchString(lit) {
			// SOQL takes YYYY-MM-DDThh:mm:ss with Z or an offset, no fraction.
			return nil, fmt.Errorf("value of filter criterion for field '%s' must be of type dateTime and should not be enclosed in quotes: %q", field, lit)
		} else if f, err := strconv.ParseFloat(lit, 64); err == nil {
			c.value = f
		} else {
			return nil, fmt.Errorf("bad literal %q", lit)
		}
	}
	return c, nil
}
