-- PostgreSQL's own ceiling for the store's read: one session by id, as `get` asks for it.
\set n random(0, 9999)
SELECT sess::text FROM bench_pgbench WHERE sid = 'bench-session-' || :n AND expire >= to_timestamp(extract(epoch FROM now()))::timestamp;
