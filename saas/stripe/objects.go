package stripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"

	sg "github.com/stripe/stripe-go/v82"
)

// object is one Stripe object type herd keeps, and how to read it with
// stripe-go. Rows keep the object exactly as Stripe sent it (the item's raw
// JSON, which stripe-go keeps in LastResponse), not stripe-go's re-encoding.
type object struct {
	Table string // table under the stripe schema, and the API's path segment
	Kind  string // the object's "object" field, as in an event's data.object
	// HasEvents is false for balance transactions: Stripe sends no events for
	// them, so incremental passes list recent ones instead.
	HasEvents bool
	list      func(ctx context.Context, c *sg.Client, lp sg.ListParams, createdGTE int64) iter.Seq2[json.RawMessage, error]
	get       func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error)
}

// objects is every object type, in backfill order: referenced objects first,
// so that a join during the first backfill finds its other side.
var objects = []object{
	{Table: "products", Kind: "product", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			return raws(c.V1Products.List(ctx, &sg.ProductListParams{ListParams: lp}), func(x *sg.Product) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1Products.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.Product) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "prices", Kind: "price", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			return raws(c.V1Prices.List(ctx, &sg.PriceListParams{ListParams: lp}), func(x *sg.Price) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1Prices.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.Price) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "coupons", Kind: "coupon", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			return raws(c.V1Coupons.List(ctx, &sg.CouponListParams{ListParams: lp}), func(x *sg.Coupon) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1Coupons.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.Coupon) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "customers", Kind: "customer", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			return raws(c.V1Customers.List(ctx, &sg.CustomerListParams{ListParams: lp}), func(x *sg.Customer) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1Customers.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.Customer) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "subscriptions", Kind: "subscription", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			// Without status=all the API hides canceled subscriptions.
			p := &sg.SubscriptionListParams{ListParams: lp, Status: sg.String("all")}
			return raws(c.V1Subscriptions.List(ctx, p), func(x *sg.Subscription) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1Subscriptions.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.Subscription) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "invoices", Kind: "invoice", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			return raws(c.V1Invoices.List(ctx, &sg.InvoiceListParams{ListParams: lp}), func(x *sg.Invoice) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1Invoices.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.Invoice) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "payment_intents", Kind: "payment_intent", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			return raws(c.V1PaymentIntents.List(ctx, &sg.PaymentIntentListParams{ListParams: lp}), func(x *sg.PaymentIntent) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1PaymentIntents.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.PaymentIntent) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "charges", Kind: "charge", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			return raws(c.V1Charges.List(ctx, &sg.ChargeListParams{ListParams: lp}), func(x *sg.Charge) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1Charges.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.Charge) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "refunds", Kind: "refund", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			return raws(c.V1Refunds.List(ctx, &sg.RefundListParams{ListParams: lp}), func(x *sg.Refund) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1Refunds.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.Refund) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "disputes", Kind: "dispute", HasEvents: true,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, _ int64) iter.Seq2[json.RawMessage, error] {
			return raws(c.V1Disputes.List(ctx, &sg.DisputeListParams{ListParams: lp}), func(x *sg.Dispute) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1Disputes.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.Dispute) *sg.APIResponse { return x.LastResponse })
		}},
	{Table: "balance_transactions", Kind: "balance_transaction", HasEvents: false,
		list: func(ctx context.Context, c *sg.Client, lp sg.ListParams, createdGTE int64) iter.Seq2[json.RawMessage, error] {
			p := &sg.BalanceTransactionListParams{ListParams: lp}
			if createdGTE > 0 {
				p.CreatedRange = &sg.RangeQueryParams{GreaterThanOrEqual: createdGTE}
			}
			return raws(c.V1BalanceTransactions.List(ctx, p), func(x *sg.BalanceTransaction) *sg.APIResponse { return x.LastResponse })
		},
		get: func(ctx context.Context, c *sg.Client, id string) (json.RawMessage, error) {
			x, err := c.V1BalanceTransactions.Retrieve(ctx, id, nil)
			return raw(x, err, func(x *sg.BalanceTransaction) *sg.APIResponse { return x.LastResponse })
		}},
}

// Objects lists the tables herd keeps under the stripe schema.
func Objects() []string {
	names := make([]string, len(objects))
	for i, o := range objects {
		names[i] = o.Table
	}
	return names
}

func objectByKind(kind string) *object {
	for i := range objects {
		if objects[i].Kind == kind {
			return &objects[i]
		}
	}
	return nil
}

func objectByTable(table string) *object {
	for i := range objects {
		if objects[i].Table == table {
			return &objects[i]
		}
	}
	return nil
}

// errNotFound is what get returns when Stripe answers 404: the object was
// deleted (or never existed in this account).
var errNotFound = errors.New("not found in Stripe")

func raws[T any](seq sg.Seq2[*T, error], resp func(*T) *sg.APIResponse) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		for x, err := range seq {
			if err != nil {
				yield(nil, err)
				return
			}
			r := resp(x)
			if r == nil || len(r.RawJSON) == 0 {
				yield(nil, fmt.Errorf("stripe-go returned a list item without its raw JSON"))
				return
			}
			if !yield(json.RawMessage(r.RawJSON), nil) {
				return
			}
		}
	}
}

func raw[T any](x *T, err error, resp func(*T) *sg.APIResponse) (json.RawMessage, error) {
	if err != nil {
		var se *sg.Error
		if errors.As(err, &se) && se.HTTPStatusCode == http.StatusNotFound {
			return nil, errNotFound
		}
		return nil, err
	}
	r := resp(x)
	if r == nil || len(r.RawJSON) == 0 {
		return nil, fmt.Errorf("stripe-go returned an object without its raw JSON")
	}
	return json.RawMessage(r.RawJSON), nil
}
