"""Dependencies: Postgres and Redis (R §四, A §4, A §5), and the backup drill (R §六.2)."""

from renderchaos.faults.spec import Described, Partition, Stop, Toxic
from renderchaos.platforms.base import Feature
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait

#: db.partition: the same toxics the runbook's failures look like on the wire, one after another
DB_PARTITION_FAULTS = (
    Toxic("database", "latency", {"latency": 1000, "jitter": 0}, label="latency 1 s"),
    Toxic("database", "timeout", {"timeout": 2000}, label="connections dropped after 2 s"),
    Toxic("database", "reset_peer", {"timeout": 0}, label="reset_peer"),
    Partition("database", label="route down"),
)

DB_DOWN = Scenario(
    id="db.down",
    title="Postgres stopped: fast 503 naming the database, recovery without restarting the API",
    runbook=Runbook("R", "§四.2 数据库连接失败"),
    faults=(Stop("database"),),
    needs=("database", "containers:api"),  # containers:api: proof that the API was not restarted
    tier="resilience",
    symptom="API requests get 503 database_unavailable within seconds; /health 503 names `database`",
    remedy="start Postgres; the API's pool (pre-ping) reconnects by itself, the API is NOT restarted",
    detect=Wait(15.0),
    recover=Wait(60.0),
    catches=("api_no_pool_preping", "api_health_always_ok"),
)

DB_PARTITION = Scenario(
    id="db.partition",
    title="API/worker cut off from Postgres (latency, dropped connections, resets): bounded latency, recovery",
    runbook=Runbook("R", "§四.2 数据库连接失败"),
    faults=DB_PARTITION_FAULTS,
    needs=("database",),
    tier="resilience",
    symptom="requests answer (200 or 503 database_*) within a bound, none hangs",
    remedy="heal the route",
    detect=Wait(30.0),
    recover=Wait(60.0),
    catches=("api_no_pool_preping",),
)

DB_POOL_EXHAUSTED = Scenario(
    id="db.pool_exhausted",
    title="every pooled connection held: 503 after DB_POOL_TIMEOUT, no idle-in-transaction leak, recovery",
    runbook=Runbook("A", "§4.1 连接池耗尽"),
    faults=(Described("every pooled connection of one API process (pool_size + max_overflow) checked out through the "
                          "platform's test hook", (Feature.TEST_HOOKS.value,)),),
    needs=("database",),
    tier="resilience",
    symptom="QueuePool limit reached: requests fail fast with 503 database_unavailable",
    remedy="the connections are released (the hold ends); A §4.1 step 4: pg_stat_activity shows no leak",
    detect=Wait(20.0),
    recover=Wait(30.0),
    catches=("api_no_pool_timeout",),
)

DB_DEADLOCK = Scenario(
    id="db.deadlock",
    title="cancel vs. a transaction locking credits then the job: one side retried, the client sees 200",
    runbook=Runbook("A", "§4.2 死锁"),
    faults=(Described("a transaction locks the user's credits row, a cancel of job J locks J and waits for credits, "
          "then the transaction updates job J: opposite lock orders", (Feature.CANCEL.value,)),),
    needs=("database:refstack",),  # the recipe locks rows of the reference stack's credits and jobs
    tier="gate",
    symptom="Postgres: deadlock detected (40P01) in the API's transaction",
    remedy="none by hand: the API retries the transaction (DB_DEADLOCK_RETRIES)",
    detect=Wait(15.0),
    recover=Wait(30.0),
    catches=("api_no_deadlock_retry",),
)

DB_SLOW_QUERY = Scenario(
    id="db.slow_query",
    title="200k jobs: the hot queries (by user, by status, by created_at) read few rows, for users with few and "
          "many jobs",
    runbook=Runbook("R", "§三.3 数据库慢查询"),
    faults=(Described("200 000 jobs bulk-inserted through the platform's schema (realistic status mix, `pending` "
                      "rare), ANALYZE", ("database",)),),
    needs=("database:refstack",),  # 200k rows inserted through the reference stack's schema
    tier="resilience",
    symptom="EXPLAIN (ANALYZE, BUFFERS) of a hot query reads thousands of rows or buffers, or takes long "
            "(R §三.3 问题1: 缺少索引): a Seq Scan, or the wrong index walked with a filter",
    remedy="none: the schema must already have the indexes",
    detect=Wait(60.0),
    recover=Wait(60.0),
    catches=("api_no_indexes", "db_no_jobs_by_user_index"),
)

REDIS_DOWN = Scenario(
    id="redis.down",
    title="Redis stopped / partitioned: API up, rate limiting fails open (documented), recovery without restart",
    runbook=Runbook("R", "§四.3 Redis连接失败"),
    faults=(Stop("cache"), Partition("cache")),
    needs=(Feature.RATE_LIMITS.value, "containers:api"),  # containers:api: proof that the API was not restarted
    tier="gate",
    symptom="/health 503 names `redis`; requests keep being served (RATE_LIMIT_FAIL_MODE=open)",
    remedy="start Redis / heal the route; the API reconnects by itself and per-key limits apply again",
    detect=Wait(10.0),
    recover=Wait(30.0),
    catches=("api_ratelimit_fails_closed", "api_health_always_ok"),
)

REDIS_MAXMEMORY = Scenario(
    id="redis.maxmemory",
    title="Redis at maxmemory: eviction policy set, keys have TTLs, API, limits and workers keep working",
    runbook=Runbook("R", "§八 Redis内存持续增长"),
    faults=(Described("CONFIG SET maxmemory (current use + 4 MiB) and filled with TTL'd keys", ("containers:cache",)),),
    needs=(Feature.RATE_LIMITS.value,),
    tier="gate",
    symptom="used_memory at maxmemory; a key written without a TTL (every write watched through keyspace "
            "notifications, its TTL read right after)",
    remedy="R §四.3: maxmemory-policy allkeys-lru; every key carries a TTL (R §八 1./2.)",
    detect=Wait(10.0),
    recover=Wait(30.0),
    catches=("api_no_redis_eviction_policy", "api_ratelimit_no_ttl", "worker_heartbeat_no_ttl"),
)

DATA_RESTORE = Scenario(
    id="data.restore",
    title="backup drill: pg_dump, drop the database, pg_restore; every job and balance in the backup is back",
    runbook=Runbook("R", "§六.2 数据丢失"),
    # R §六.2 step 1 (stop writes: API, workers), then the disaster the drill recovers from
    faults=(Stop("api"), Stop("worker"),
            Described("pg_dump after N jobs, more jobs, then DROP DATABASE (tools run in the database container)",
                      ("containers:database",))),
    needs=("database",),
    tier="resilience",
    symptom="the API cannot serve (database gone)",
    remedy="R §六.2: stop writes (API, workers), pg_restore the latest dump, start the services, verify",
    detect=Wait(30.0),
    recover=Wait(120.0),
    catches=("db_migrate_recreates_tables",),
)
