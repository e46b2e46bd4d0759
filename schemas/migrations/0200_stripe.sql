-- Stripe in the warehouse: one table per object with the object as Stripe sent
-- it (data), typed columns generated from it so they can never disagree with
-- it, and the bookkeeping that makes syncing safe to repeat: deleted, the
-- created time of the newest event applied (an older event never overwrites a
-- newer one), synced_at. stripe.events logs every event seen, stripe.sync_state
-- is what an operator queries to see how far the sync has got.

CREATE SCHEMA IF NOT EXISTS stripe;

-- An expandable field holds an id, or the object when expanded: the id either way.
CREATE FUNCTION stripe.ref(v jsonb) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v) WHEN 'object' THEN v ->> 'id' WHEN 'string' THEN v #>> '{}' END
$$;

-- Stripe times are Unix seconds.
CREATE FUNCTION stripe.ts(v jsonb) RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v) WHEN 'number' THEN to_timestamp((v #>> '{}')::double precision) END
$$;

CREATE FUNCTION stripe.int(v jsonb) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v) WHEN 'number' THEN (v #>> '{}')::numeric::bigint END
$$;

CREATE FUNCTION stripe.bool(v jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v) WHEN 'boolean' THEN (v #>> '{}')::boolean END
$$;

CREATE TABLE stripe.customers (
    id                 text PRIMARY KEY,
    data               jsonb NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    last_event_created timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    created            timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    email              text GENERATED ALWAYS AS (data ->> 'email') STORED,
    name               text GENERATED ALWAYS AS (data ->> 'name') STORED,
    description        text GENERATED ALWAYS AS (data ->> 'description') STORED,
    currency           text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    balance            bigint GENERATED ALWAYS AS (stripe.int(data -> 'balance')) STORED,
    delinquent         boolean GENERATED ALWAYS AS (stripe.bool(data -> 'delinquent')) STORED,
    livemode           boolean GENERATED ALWAYS AS (stripe.bool(data -> 'livemode')) STORED
);
CREATE INDEX ON stripe.customers (email);
CREATE INDEX ON stripe.customers (created);

CREATE TABLE stripe.products (
    id                 text PRIMARY KEY,
    data               jsonb NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    last_event_created timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    created            timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    name               text GENERATED ALWAYS AS (data ->> 'name') STORED,
    description        text GENERATED ALWAYS AS (data ->> 'description') STORED,
    active             boolean GENERATED ALWAYS AS (stripe.bool(data -> 'active')) STORED,
    default_price      text GENERATED ALWAYS AS (stripe.ref(data -> 'default_price')) STORED,
    livemode           boolean GENERATED ALWAYS AS (stripe.bool(data -> 'livemode')) STORED
);

CREATE TABLE stripe.prices (
    id                       text PRIMARY KEY,
    data                     jsonb NOT NULL,
    deleted                  boolean NOT NULL DEFAULT false,
    last_event_created       timestamptz,
    synced_at                timestamptz NOT NULL DEFAULT now(),
    created                  timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    product                  text GENERATED ALWAYS AS (stripe.ref(data -> 'product')) STORED,
    active                   boolean GENERATED ALWAYS AS (stripe.bool(data -> 'active')) STORED,
    currency                 text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    unit_amount              bigint GENERATED ALWAYS AS (stripe.int(data -> 'unit_amount')) STORED,
    type                     text GENERATED ALWAYS AS (data ->> 'type') STORED,
    recurring_interval       text GENERATED ALWAYS AS (data -> 'recurring' ->> 'interval') STORED,
    recurring_interval_count bigint GENERATED ALWAYS AS (stripe.int(data -> 'recurring' -> 'interval_count')) STORED,
    nickname                 text GENERATED ALWAYS AS (data ->> 'nickname') STORED,
    lookup_key               text GENERATED ALWAYS AS (data ->> 'lookup_key') STORED
);
CREATE INDEX ON stripe.prices (product);

CREATE TABLE stripe.subscriptions (
    id                   text PRIMARY KEY,
    data                 jsonb NOT NULL,
    deleted              boolean NOT NULL DEFAULT false,
    last_event_created   timestamptz,
    synced_at            timestamptz NOT NULL DEFAULT now(),
    created              timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    customer             text GENERATED ALWAYS AS (stripe.ref(data -> 'customer')) STORED,
    status               text GENERATED ALWAYS AS (data ->> 'status') STORED,
    currency             text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    collection_method    text GENERATED ALWAYS AS (data ->> 'collection_method') STORED,
    start_date           timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'start_date')) STORED,
    -- Newer API versions moved the period onto the subscription items.
    current_period_start timestamptz GENERATED ALWAYS AS (stripe.ts(coalesce(data -> 'current_period_start', data -> 'items' -> 'data' -> 0 -> 'current_period_start'))) STORED,
    current_period_end   timestamptz GENERATED ALWAYS AS (stripe.ts(coalesce(data -> 'current_period_end', data -> 'items' -> 'data' -> 0 -> 'current_period_end'))) STORED,
    trial_start          timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'trial_start')) STORED,
    trial_end            timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'trial_end')) STORED,
    cancel_at_period_end boolean GENERATED ALWAYS AS (stripe.bool(data -> 'cancel_at_period_end')) STORED,
    cancel_at            timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'cancel_at')) STORED,
    canceled_at          timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'canceled_at')) STORED,
    ended_at             timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'ended_at')) STORED
);
CREATE INDEX ON stripe.subscriptions (customer);
CREATE INDEX ON stripe.subscriptions (status);

CREATE TABLE stripe.invoices (
    id                 text PRIMARY KEY,
    data               jsonb NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    last_event_created timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    created            timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    customer           text GENERATED ALWAYS AS (stripe.ref(data -> 'customer')) STORED,
    customer_email     text GENERATED ALWAYS AS (data ->> 'customer_email') STORED,
    -- Newer API versions moved the subscription under parent.subscription_details.
    subscription       text GENERATED ALWAYS AS (coalesce(stripe.ref(data -> 'subscription'), stripe.ref(data -> 'parent' -> 'subscription_details' -> 'subscription'))) STORED,
    status             text GENERATED ALWAYS AS (data ->> 'status') STORED,
    number             text GENERATED ALWAYS AS (data ->> 'number') STORED,
    billing_reason     text GENERATED ALWAYS AS (data ->> 'billing_reason') STORED,
    currency           text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    amount_due         bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount_due')) STORED,
    amount_paid        bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount_paid')) STORED,
    amount_remaining   bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount_remaining')) STORED,
    subtotal           bigint GENERATED ALWAYS AS (stripe.int(data -> 'subtotal')) STORED,
    total              bigint GENERATED ALWAYS AS (stripe.int(data -> 'total')) STORED,
    period_start       timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'period_start')) STORED,
    period_end         timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'period_end')) STORED,
    due_date           timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'due_date')) STORED
);
CREATE INDEX ON stripe.invoices (customer);
CREATE INDEX ON stripe.invoices (subscription);
CREATE INDEX ON stripe.invoices (created);

CREATE TABLE stripe.charges (
    id                  text PRIMARY KEY,
    data                jsonb NOT NULL,
    deleted             boolean NOT NULL DEFAULT false,
    last_event_created  timestamptz,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    created             timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    customer            text GENERATED ALWAYS AS (stripe.ref(data -> 'customer')) STORED,
    payment_intent      text GENERATED ALWAYS AS (stripe.ref(data -> 'payment_intent')) STORED,
    balance_transaction text GENERATED ALWAYS AS (stripe.ref(data -> 'balance_transaction')) STORED,
    status              text GENERATED ALWAYS AS (data ->> 'status') STORED,
    currency            text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    amount              bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount')) STORED,
    amount_captured     bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount_captured')) STORED,
    amount_refunded     bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount_refunded')) STORED,
    paid                boolean GENERATED ALWAYS AS (stripe.bool(data -> 'paid')) STORED,
    captured            boolean GENERATED ALWAYS AS (stripe.bool(data -> 'captured')) STORED,
    refunded            boolean GENERATED ALWAYS AS (stripe.bool(data -> 'refunded')) STORED,
    disputed            boolean GENERATED ALWAYS AS (stripe.bool(data -> 'disputed')) STORED,
    failure_code        text GENERATED ALWAYS AS (data ->> 'failure_code') STORED,
    receipt_email       text GENERATED ALWAYS AS (data ->> 'receipt_email') STORED,
    description         text GENERATED ALWAYS AS (data ->> 'description') STORED
);
CREATE INDEX ON stripe.charges (customer);
CREATE INDEX ON stripe.charges (payment_intent);
CREATE INDEX ON stripe.charges (created);

CREATE TABLE stripe.payment_intents (
    id                 text PRIMARY KEY,
    data               jsonb NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    last_event_created timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    created            timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    customer           text GENERATED ALWAYS AS (stripe.ref(data -> 'customer')) STORED,
    latest_charge      text GENERATED ALWAYS AS (stripe.ref(data -> 'latest_charge')) STORED,
    status             text GENERATED ALWAYS AS (data ->> 'status') STORED,
    currency           text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    amount             bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount')) STORED,
    amount_received    bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount_received')) STORED,
    description        text GENERATED ALWAYS AS (data ->> 'description') STORED,
    receipt_email      text GENERATED ALWAYS AS (data ->> 'receipt_email') STORED,
    canceled_at        timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'canceled_at')) STORED
);
CREATE INDEX ON stripe.payment_intents (customer);
CREATE INDEX ON stripe.payment_intents (created);

CREATE TABLE stripe.refunds (
    id                  text PRIMARY KEY,
    data                jsonb NOT NULL,
    deleted             boolean NOT NULL DEFAULT false,
    last_event_created  timestamptz,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    created             timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    charge              text GENERATED ALWAYS AS (stripe.ref(data -> 'charge')) STORED,
    payment_intent      text GENERATED ALWAYS AS (stripe.ref(data -> 'payment_intent')) STORED,
    balance_transaction text GENERATED ALWAYS AS (stripe.ref(data -> 'balance_transaction')) STORED,
    status              text GENERATED ALWAYS AS (data ->> 'status') STORED,
    currency            text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    amount              bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount')) STORED,
    reason              text GENERATED ALWAYS AS (data ->> 'reason') STORED
);
CREATE INDEX ON stripe.refunds (charge);

CREATE TABLE stripe.disputes (
    id                 text PRIMARY KEY,
    data               jsonb NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    last_event_created timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    created            timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    charge             text GENERATED ALWAYS AS (stripe.ref(data -> 'charge')) STORED,
    payment_intent     text GENERATED ALWAYS AS (stripe.ref(data -> 'payment_intent')) STORED,
    status             text GENERATED ALWAYS AS (data ->> 'status') STORED,
    currency           text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    amount             bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount')) STORED,
    reason             text GENERATED ALWAYS AS (data ->> 'reason') STORED
);
CREATE INDEX ON stripe.disputes (charge);

CREATE TABLE stripe.balance_transactions (
    id                 text PRIMARY KEY,
    data               jsonb NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    last_event_created timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    created            timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    type               text GENERATED ALWAYS AS (data ->> 'type') STORED,
    status             text GENERATED ALWAYS AS (data ->> 'status') STORED,
    reporting_category text GENERATED ALWAYS AS (data ->> 'reporting_category') STORED,
    source             text GENERATED ALWAYS AS (stripe.ref(data -> 'source')) STORED,
    currency           text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    amount             bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount')) STORED,
    fee                bigint GENERATED ALWAYS AS (stripe.int(data -> 'fee')) STORED,
    net                bigint GENERATED ALWAYS AS (stripe.int(data -> 'net')) STORED,
    available_on       timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'available_on')) STORED,
    description        text GENERATED ALWAYS AS (data ->> 'description') STORED
);
CREATE INDEX ON stripe.balance_transactions (created);
CREATE INDEX ON stripe.balance_transactions (source);
-- Pending transactions are re-read once they should have become available.
CREATE INDEX ON stripe.balance_transactions (available_on) WHERE status = 'pending';

CREATE TABLE stripe.coupons (
    id                 text PRIMARY KEY,
    data               jsonb NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    last_event_created timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    created            timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'created')) STORED,
    name               text GENERATED ALWAYS AS (data ->> 'name') STORED,
    duration           text GENERATED ALWAYS AS (data ->> 'duration') STORED,
    duration_in_months bigint GENERATED ALWAYS AS (stripe.int(data -> 'duration_in_months')) STORED,
    percent_off        numeric GENERATED ALWAYS AS (CASE jsonb_typeof(data -> 'percent_off') WHEN 'number' THEN (data ->> 'percent_off')::numeric END) STORED,
    amount_off         bigint GENERATED ALWAYS AS (stripe.int(data -> 'amount_off')) STORED,
    currency           text GENERATED ALWAYS AS (data ->> 'currency') STORED,
    valid              boolean GENERATED ALWAYS AS (stripe.bool(data -> 'valid')) STORED,
    times_redeemed     bigint GENERATED ALWAYS AS (stripe.int(data -> 'times_redeemed')) STORED,
    max_redemptions    bigint GENERATED ALWAYS AS (stripe.int(data -> 'max_redemptions')) STORED,
    redeem_by          timestamptz GENERATED ALWAYS AS (stripe.ts(data -> 'redeem_by')) STORED
);

-- Every event herd has seen, by the Events API or a webhook, with what it did:
-- applied (the object was refetched and written), stale (the table already
-- held a newer event's state) or ignored (not an object herd keeps).
CREATE TABLE stripe.events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    created     timestamptz NOT NULL,
    object_type text,
    object_id   text,
    via         text NOT NULL CHECK (via IN ('api', 'webhook')),
    outcome     text NOT NULL CHECK (outcome IN ('applied', 'stale', 'ignored')),
    data        jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON stripe.events (created);
CREATE INDEX ON stripe.events (object_id);

-- One row per table, and one named 'events' for the Events API cursor.
CREATE TABLE stripe.sync_state (
    object               text PRIMARY KEY,
    phase                text NOT NULL DEFAULT 'pending' CHECK (phase IN ('pending', 'backfill', 'incremental')),
    backfill_started_at  timestamptz,
    backfill_finished_at timestamptz,
    backfill_rows        bigint,
    -- events: created time and id of the newest event seen; balance_transactions:
    -- created time of the newest transaction (they have no events).
    cursor               timestamptz,
    cursor_event_id      text,
    -- events: every event created before this instant has been applied. When it
    -- falls out of the Events API's retention, the next sync is a full resync.
    synced_until         timestamptz,
    last_success_at      timestamptz,
    last_error           text,
    last_error_at        timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
