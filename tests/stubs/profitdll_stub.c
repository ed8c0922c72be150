/*
 * A stand-in for Nelogica's ProfitDLL (4.x API) for tests on Linux.
 *
 * It exports the same symbols with the same signatures (cdecl here, stdcall in the
 * real DLL), keeps the callbacks it is given, and fires scripted events from its
 * own single callback thread, as the real DLL does:
 *
 *   - after login: state changes (login, market, activation; routing when asked);
 *   - after SubscribeTicker: TVSTUB_TRADES trades (default 40) through the V2 trade
 *     callback (opaque pointer + TranslateTrade), including one edit of an earlier
 *     trade, a "partially connected" market state (6) in the middle and back to 4,
 *     and at 3/4 a market disconnect and reconnect after which 5 s of trades are
 *     missing (trade dates are 03/11/2025, or today with TVSTUB_TODAY=1);
 *   - after SubscribeOfferBook: a full book (packed arrays), then add, edit,
 *     delete and delete-from updates;
 *   - after GetHistoryTrades: trades spread over the requested window through the
 *     V2 history callback, progress 1..100, the last one flagged "last packet";
 *   - orders: SendOrder returns int64 ids above 2^32 and fires the order callback.
 *
 * Bad arguments return the documented NL error codes: a history start older than
 * 30 days gives NL_HISTORY_PERIOD_LIMIT; a WIN/WDO request over more than one day,
 * or a second request for a symbol while one runs, gives NL_INVALID_ARGS and is
 * counted (StubViolations) so tests can assert the adapter never does it.
 * Pointers handed to callbacks are freed or overwritten as soon as they return.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>

#define NL_OK 0
#define NL_INTERNAL_ERROR ((int)0x80000001u)
#define NL_NOT_INITIALIZED ((int)0x80000002u)
#define NL_INVALID_ARGS ((int)0x80000003u)
#define NL_NO_LOGIN ((int)0x80000005u)
#define NL_MARKET_ONLY ((int)0x8000000Au)
#define NL_NOT_FOUND ((int)0x8000000Cu)
#define NL_VERSION_NOT_SUPPORTED ((int)0x8000000Du)
#define NL_INVALID_TICKER ((int)0x8000001Fu)
#define NL_HISTORY_PERIOD_LIMIT ((int)0x8000002Eu)

typedef struct {
    wchar_t *ticker;
    wchar_t *exchange;
    int feed;
} TAssetID;

typedef struct {
    uint8_t version;
    wchar_t *ticker;
    wchar_t *exchange;
    uint8_t feedType;
} TConnectorAssetIdentifier;

typedef struct {
    uint16_t wYear, wMonth, wDayOfWeek, wDay, wHour, wMinute, wSecond, wMilliseconds;
} SYSTEMTIME;

typedef struct {
    uint8_t version;
    SYSTEMTIME tradeDate;
    uint32_t tradeNumber;
    double price;
    int64_t quantity;
    double volume;
    int32_t buyAgent;
    int32_t sellAgent;
    uint8_t tradeType;
} TConnectorTrade;

typedef struct {
    uint8_t version;
    int32_t brokerId;
    wchar_t *accountId;
    wchar_t *subAccountId;
    int64_t reserved;
} TConnectorAccountIdentifier;

typedef struct {
    uint8_t version;
    TConnectorAccountIdentifier account;
    TConnectorAssetIdentifier asset;
    wchar_t *password;
    uint8_t orderType;
    uint8_t orderSide;
    double price;
    double stopPrice;
    int64_t quantity;
} TConnectorSendOrder;

typedef struct {
    uint8_t version;
    int64_t localOrderId;
    wchar_t *clOrderId;
} TConnectorOrderIdentifier;

typedef struct {
    uint8_t version;
    TConnectorAccountIdentifier account;
    TConnectorOrderIdentifier order;
    wchar_t *password;
} TConnectorCancelOrder;

typedef struct {
    uint8_t version;
    TConnectorAccountIdentifier account;
    wchar_t *password;
} TConnectorCancelAllOrders;

typedef struct {
    uint8_t version;
    TConnectorAccountIdentifier account;
    TConnectorAssetIdentifier asset;
    int64_t openQuantity;
    double openAveragePrice;
    uint8_t openSide;
    double dailyAverageSellPrice;
    int64_t dailySellQuantity;
    double dailyAverageBuyPrice;
    int64_t dailyBuyQuantity;
} TConnectorTradingAccountPosition;

typedef void (*StateCb)(int, int);
typedef void (*ProgressCb)(TAssetID, int);
typedef void (*TradeCbV2)(TConnectorAssetIdentifier, size_t, unsigned int);
typedef void (*OfferBookCbV2)(TAssetID, int, int, int, int64_t, int, int64_t, double, char, char,
                              char, char, char, wchar_t *, void *, void *);
typedef void (*OrderCb)(TConnectorOrderIdentifier);
typedef void (*AnyCb)(void);

/* ------------------------------------------------------------------ state */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_t engine;
static int running = 0, initialized = 0, routing = 0;
static StateCb state_cb;
static ProgressCb progress_cb;
static TradeCbV2 trade_cb, history_cb;
static OfferBookCbV2 book_cb;
static OrderCb order_cb;
static int violations = 0;
static int64_t next_order_id = 5000000001LL; /* above 2^32: needs an int64 restype */
static int64_t position_qty = 0;
static int64_t sent_ids[256];
static int n_sent = 0;

enum { JOB_LOGIN, JOB_TRADES, JOB_BOOK, JOB_HISTORY, JOB_ORDER, JOB_STOP };
typedef struct Job {
    int kind;
    wchar_t ticker[32];
    wchar_t exchange[8];
    time_t start, end; /* history window, local time as if UTC */
    int64_t order_id;
    struct Job *next;
} Job;
static Job *head = NULL, *tail = NULL;
static wchar_t history_running[8][32];

static void push(Job *j) {
    pthread_mutex_lock(&mu);
    j->next = NULL;
    if (tail) tail->next = j; else head = j;
    tail = j;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static Job *job(int kind, const wchar_t *ticker, const wchar_t *exchange) {
    Job *j = calloc(1, sizeof(Job));
    j->kind = kind;
    if (ticker) wcsncpy(j->ticker, ticker, 31);
    if (exchange) wcsncpy(j->exchange, exchange, 7);
    return j;
}

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v ? atoi(v) : fallback;
}

/* ------------------------------------------------------------------ scripts */
static void fire_trade(TradeCbV2 cb, const wchar_t *ticker, const wchar_t *exchange,
                       TConnectorTrade *t, unsigned flags) {
    TConnectorAssetIdentifier a = {0, (wchar_t *)ticker, (wchar_t *)exchange, 0};
    TConnectorTrade *copy = malloc(sizeof *copy);
    *copy = *t;
    cb(a, (size_t)copy, flags);
    memset(copy, 0xAB, sizeof *copy); /* the pointer is dead once the callback returns */
    free(copy);
}

/* The trading date of realtime trades: 03/11/2025, or today with TVSTUB_TODAY=1. */
static void trade_day(uint16_t *y, uint16_t *m, uint16_t *d) {
    *y = 2025; *m = 11; *d = 3;
    if (env_int("TVSTUB_TODAY", 0)) {
        time_t now = time(NULL) - 3 * 3600;
        struct tm tm;
        gmtime_r(&now, &tm);
        *y = (uint16_t)(tm.tm_year + 1900); *m = (uint16_t)(tm.tm_mon + 1); *d = (uint16_t)tm.tm_mday;
    }
}

static void script_trades(Job *j) {
    int n = env_int("TVSTUB_TRADES", 40);
    uint16_t y, m, d;
    trade_day(&y, &m, &d);
    int jump_ms = 0;
    for (int i = 0; i < n && running; i++) {
        if (i == n / 2 && state_cb) {
            state_cb(2, 6); /* partially connected: callbacks not drained fast enough */
            state_cb(2, 4);
        }
        if (i == 3 * n / 4 && state_cb) { /* the market link drops; 5 s are missed */
            state_cb(2, 0);
            state_cb(2, 1);
            state_cb(2, 4);
            jump_ms = 5000;
        }
        int ms = i + jump_ms;
        TConnectorTrade t = {0};
        t.tradeDate = (SYSTEMTIME){y, m, 1, d, 10, 0, (uint16_t)(ms / 1000), (uint16_t)(ms % 1000)};
        t.tradeNumber = 1000 + i;
        t.price = 128000.0 + 5.0 * (i % 7);
        t.quantity = 1 + i % 5;
        t.volume = t.price * t.quantity * 0.2;
        t.buyAgent = 10 + i % 3;
        t.sellAgent = 20 + i % 4;
        t.tradeType = (uint8_t)(2 + i % 2);
        fire_trade(trade_cb, j->ticker, j->exchange, &t, 0);
        if (i == 10) { /* edit of trade 1005: new quantity and price */
            TConnectorTrade e = {0};
            e.tradeDate = (SYSTEMTIME){y, m, 1, d, 10, 0, 0, 5};
            e.tradeNumber = 1005;
            e.price = 128100.0;
            e.quantity = 9;
            e.volume = e.price * 9 * 0.2;
            e.buyAgent = 77;
            e.sellAgent = 88;
            e.tradeType = 2;
            fire_trade(trade_cb, j->ticker, j->exchange, &e, 1);
        }
    }
}

static void put(unsigned char **p, const void *v, size_t n) {
    memcpy(*p, v, n);
    *p += n;
}

/* A full-book array: int32 count, int32 total size, packed entries, uint32 flags. */
static void *book_array(int side, int count, size_t *size_out) {
    const char *date = "03/11/2025 10:00:00.000";
    uint16_t dn = (uint16_t)strlen(date);
    size_t entry = 8 + 8 + 4 + 8 + 2 + dn;
    size_t total = 8 + entry * (size_t)count + 4;
    unsigned char *buf = malloc(total), *p = buf;
    int32_t c = count, t = (int32_t)total;
    put(&p, &c, 4);
    put(&p, &t, 4);
    for (int i = 0; i < count; i++) {
        /* list order: position count-1 first; position 0 (the best) last */
        double price = side == 0 ? 127990.0 + 5.0 * i : 128020.0 - 5.0 * i;
        int64_t qty = 10 * (i + 1) + side;
        int32_t agent = 100 + i + 10 * side;
        int64_t offer = 90000 + 100 * side + i;
        put(&p, &price, 8);
        put(&p, &qty, 8);
        put(&p, &agent, 4);
        put(&p, &offer, 8);
        put(&p, &dn, 2);
        put(&p, date, dn);
    }
    uint32_t flags = 1 | 2; /* first and last packet */
    put(&p, &flags, 4);
    *size_out = total;
    return buf;
}

static void script_book(Job *j) {
    TAssetID a = {j->ticker, j->exchange, 0};
    size_t sb, ss;
    void *buy = book_array(0, 3, &sb), *sell = book_array(1, 3, &ss);
    wchar_t full_date[32];
    wcscpy(full_date, L"03/11/2025 10:00:01.000");
    book_cb(a, 4, 0, 0, 0, 0, 0, 0.0, 0, 0, 1, 0, 0, full_date, sell, buy);
    memset(buy, 0xCD, sb);
    memset(sell, 0xCD, ss);
    free(buy);
    free(sell);
    wchar_t date[32];
    wcscpy(date, L"03/11/2025 10:00:01.250");
    /* add a new best bid at position 0 (the end of the bid list) */
    book_cb(a, 0, 0, 0, 7, 55, 91000, 128000.0, 1, 1, 1, 1, 1, date, NULL, NULL);
    /* edit the ask at position 1: quantity only */
    wcscpy(date, L"03/11/2025 10:00:01.500");
    book_cb(a, 1, 1, 1, 33, 0, 0, 0.0, 0, 1, 1, 0, 0, date, NULL, NULL);
    /* delete the bid at position 3 (the first in the list) */
    wcscpy(date, L"03/11/2025 10:00:01.750");
    book_cb(a, 2, 3, 0, 0, 0, 0, 0.0, 0, 0, 1, 0, 0, date, NULL, NULL);
    /* delete asks from position 0 to the end */
    wcscpy(date, L"03/11/2025 10:00:02.000");
    book_cb(a, 3, 0, 1, 0, 0, 0, 0.0, 0, 0, 1, 0, 0, date, NULL, NULL);
    wmemset(date, L'#', 31); /* the string is dead once the callback returns */
}

static void script_history(Job *j) {
    int n = env_int("TVSTUB_HISTORY_TRADES", 100);
    TAssetID a = {j->ticker, j->exchange, 0};
    time_t span = j->end - j->start;
    for (int i = 0; i < n && running; i++) {
        time_t at = j->start + (time_t)((double)span * i / n);
        struct tm tm;
        gmtime_r(&at, &tm);
        TConnectorTrade t = {0};
        t.tradeDate = (SYSTEMTIME){(uint16_t)(tm.tm_year + 1900), (uint16_t)(tm.tm_mon + 1),
                                   (uint16_t)tm.tm_wday, (uint16_t)tm.tm_mday,
                                   (uint16_t)tm.tm_hour, (uint16_t)tm.tm_min,
                                   (uint16_t)tm.tm_sec, (uint16_t)(i % 1000)};
        t.tradeNumber = 500 + i;
        t.price = 5000.0 + i;
        t.quantity = 1 + i % 3;
        t.volume = t.price * t.quantity;
        t.buyAgent = 3;
        t.sellAgent = 4;
        t.tradeType = (uint8_t)(2 + i % 2);
        fire_trade(history_cb, j->ticker, j->exchange, &t, i == n - 1 ? 2u : 0u);
        if (progress_cb && (i + 1) * 100 / n != i * 100 / n) progress_cb(a, (i + 1) * 100 / n);
    }
    if (n == 0 && progress_cb) progress_cb(a, 100);
    pthread_mutex_lock(&mu);
    for (int k = 0; k < 8; k++)
        if (wcscmp(history_running[k], j->ticker) == 0) history_running[k][0] = 0;
    pthread_mutex_unlock(&mu);
}

static void *engine_main(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!head) pthread_cond_wait(&cv, &mu);
        Job *j = head;
        head = j->next;
        if (!head) tail = NULL;
        pthread_mutex_unlock(&mu);
        int kind = j->kind;
        if (kind == JOB_LOGIN && state_cb) {
            state_cb(0, 0); /* login connected */
            state_cb(2, 1); /* market connecting */
            state_cb(2, 4); /* market connected */
            state_cb(3, 0); /* activation valid */
            if (routing) state_cb(1, 5);
        } else if (kind == JOB_TRADES && trade_cb) {
            script_trades(j);
        } else if (kind == JOB_BOOK && book_cb) {
            script_book(j);
        } else if (kind == JOB_HISTORY && history_cb) {
            script_history(j);
        } else if (kind == JOB_ORDER && order_cb) {
            TConnectorOrderIdentifier id = {0, j->order_id, L"CLORD-1"};
            order_cb(id);
        }
        free(j);
        if (kind == JOB_STOP) return NULL;
    }
}

/* ------------------------------------------------------------------ exports */
static int start(const wchar_t *key, const wchar_t *user, const wchar_t *password, StateCb s,
                 ProgressCb p, int with_routing) {
    if (!key || !user || !password || !*key || !*user) return NL_INVALID_ARGS;
    if (initialized) return NL_INTERNAL_ERROR;
    state_cb = s;
    progress_cb = p;
    routing = with_routing;
    running = 1;
    initialized = 1;
    pthread_create(&engine, NULL, engine_main, NULL);
    if (wcscmp(password, L"wrong") == 0) {
        if (state_cb) state_cb(0, 2); /* bad password: reported through the state callback */
        return NL_OK;
    }
    push(job(JOB_LOGIN, NULL, NULL));
    return NL_OK;
}

int DLLInitializeMarketLogin(const wchar_t *key, const wchar_t *user, const wchar_t *password,
                             StateCb s, AnyCb newTrade, AnyCb newDaily, AnyCb priceBook,
                             AnyCb offerBook, AnyCb historyTrade, ProgressCb p, AnyCb tinyBook) {
    (void)newTrade; (void)newDaily; (void)priceBook; (void)offerBook; (void)historyTrade;
    (void)tinyBook;
    return start(key, user, password, s, p, 0);
}

int DLLInitializeLogin(const wchar_t *key, const wchar_t *user, const wchar_t *password, StateCb s,
                       AnyCb history, AnyCb orderChange, AnyCb account, AnyCb newTrade,
                       AnyCb newDaily, AnyCb priceBook, AnyCb offerBook, AnyCb historyTrade,
                       ProgressCb p, AnyCb tinyBook) {
    (void)history; (void)orderChange; (void)account; (void)newTrade; (void)newDaily;
    (void)priceBook; (void)offerBook; (void)historyTrade; (void)tinyBook;
    return start(key, user, password, s, p, 1);
}

int DLLFinalize(void) {
    if (!initialized) return NL_NOT_INITIALIZED;
    running = 0;
    push(job(JOB_STOP, NULL, NULL));
    pthread_join(engine, NULL);
    initialized = 0;
    state_cb = NULL; progress_cb = NULL; trade_cb = NULL; history_cb = NULL;
    book_cb = NULL; order_cb = NULL;
    return NL_OK;
}

int SetStateCallback(StateCb cb) { state_cb = cb; return NL_OK; }
int SetSerieProgressCallback(ProgressCb cb) { progress_cb = cb; return NL_OK; }
int SetTradeCallbackV2(TradeCbV2 cb) { trade_cb = cb; return NL_OK; }
int SetHistoryTradeCallbackV2(TradeCbV2 cb) { history_cb = cb; return NL_OK; }
int SetOfferBookCallbackV2(OfferBookCbV2 cb) { book_cb = cb; return NL_OK; }
int SetOrderCallback(OrderCb cb) { order_cb = cb; return NL_OK; }
int SetInvalidTickerCallback(AnyCb cb) { (void)cb; return NL_OK; }

static int check_ticker(const wchar_t *ticker, const wchar_t *exchange) {
    if (!initialized) return NL_NOT_INITIALIZED;
    if (!ticker || !*ticker || !exchange || (wcscmp(exchange, L"B") && wcscmp(exchange, L"F")))
        return NL_INVALID_ARGS;
    if (wcsncmp(ticker, L"BAD", 3) == 0) return NL_INVALID_TICKER;
    return NL_OK;
}

int SubscribeTicker(const wchar_t *ticker, const wchar_t *exchange) {
    int rc = check_ticker(ticker, exchange);
    if (rc == NL_OK) push(job(JOB_TRADES, ticker, exchange));
    return rc;
}

int UnsubscribeTicker(const wchar_t *ticker, const wchar_t *exchange) {
    return check_ticker(ticker, exchange);
}

int SubscribeOfferBook(const wchar_t *ticker, const wchar_t *exchange) {
    int rc = check_ticker(ticker, exchange);
    if (rc == NL_OK) push(job(JOB_BOOK, ticker, exchange));
    return rc;
}

int UnsubscribeOfferBook(const wchar_t *ticker, const wchar_t *exchange) {
    return check_ticker(ticker, exchange);
}

/* "DD/MM/YYYY HH:mm:SS" -> seconds (local time, as if UTC); -1 if malformed */
static time_t parse_date(const wchar_t *s) {
    int d, m, y, hh, mm, ss;
    if (!s || swscanf(s, L"%d/%d/%d %d:%d:%d", &d, &m, &y, &hh, &mm, &ss) != 6) return -1;
    struct tm tm = {0};
    tm.tm_mday = d; tm.tm_mon = m - 1; tm.tm_year = y - 1900;
    tm.tm_hour = hh; tm.tm_min = mm; tm.tm_sec = ss;
    return timegm(&tm);
}

int GetHistoryTrades(const wchar_t *ticker, const wchar_t *exchange, const wchar_t *dtStart,
                     const wchar_t *dtEnd) {
    int rc = check_ticker(ticker, exchange);
    if (rc != NL_OK) return rc;
    time_t start = parse_date(dtStart), end = parse_date(dtEnd);
    if (start < 0 || end < 0 || end < start) return NL_INVALID_ARGS;
    time_t now = time(NULL) - 3 * 3600; /* São Paulo wall clock */
    if (start < now - 30 * 86400) return NL_HISTORY_PERIOD_LIMIT;
    int mini = wcsncmp(ticker, L"WIN", 3) == 0 || wcsncmp(ticker, L"WDO", 3) == 0;
    if (mini && end - start > 86400) {
        violations++;
        return NL_INVALID_ARGS;
    }
    pthread_mutex_lock(&mu);
    int free_slot = -1;
    for (int k = 0; k < 8; k++) {
        if (wcscmp(history_running[k], ticker) == 0) {
            violations++;
            pthread_mutex_unlock(&mu);
            return NL_INVALID_ARGS;
        }
        if (!history_running[k][0] && free_slot < 0) free_slot = k;
    }
    if (free_slot >= 0) wcsncpy(history_running[free_slot], ticker, 31);
    pthread_mutex_unlock(&mu);
    Job *j = job(JOB_HISTORY, ticker, exchange);
    j->start = start;
    j->end = end;
    push(j);
    return NL_OK;
}

int TranslateTrade(size_t pTrade, TConnectorTrade *out) {
    if (!pTrade || !out) return NL_INVALID_ARGS;
    if (out->version != 0) return NL_VERSION_NOT_SUPPORTED;
    *out = *(TConnectorTrade *)pTrade;
    return NL_OK;
}

int GetAgentNameLength(int agentId, int shortName) {
    wchar_t buf[64];
    return swprintf(buf, 64, shortName ? L"AG%d" : L"Agent %d Corretora", agentId);
}

int GetAgentName(int length, int agentId, wchar_t *buffer, int shortName) {
    if (!buffer || length <= 0) return NL_INVALID_ARGS;
    swprintf(buffer, (size_t)length + 1, shortName ? L"AG%d" : L"Agent %d Corretora", agentId);
    return NL_OK;
}

int64_t SendOrder(const TConnectorSendOrder *o) {
    if (!initialized) return NL_NOT_INITIALIZED;
    if (!routing) return NL_MARKET_ONLY;
    if (!o || o->version < 1 || (o->orderSide != 1 && o->orderSide != 2) || o->quantity <= 0 ||
        (o->orderType != 1 && o->orderType != 2 && o->orderType != 4) || !o->asset.ticker ||
        !o->password || (o->orderType == 1 && o->price != -1.0) ||
        (o->orderType != 4 && o->stopPrice != -1.0))
        return NL_INVALID_ARGS;
    pthread_mutex_lock(&mu);
    int64_t id = next_order_id++;
    if (n_sent < 256) sent_ids[n_sent++] = id;
    position_qty += o->orderSide == 1 ? o->quantity : -o->quantity;
    pthread_mutex_unlock(&mu);
    Job *j = job(JOB_ORDER, NULL, NULL);
    j->order_id = id;
    push(j);
    return id;
}

int SendCancelOrderV2(const TConnectorCancelOrder *c) {
    if (!initialized) return NL_NOT_INITIALIZED;
    if (!routing) return NL_MARKET_ONLY;
    if (!c || !c->password) return NL_INVALID_ARGS;
    for (int k = 0; k < n_sent; k++) {
        if (sent_ids[k] == c->order.localOrderId) {
            Job *j = job(JOB_ORDER, NULL, NULL);
            j->order_id = c->order.localOrderId;
            push(j);
            return NL_OK;
        }
    }
    return NL_NOT_FOUND;
}

int SendCancelAllOrdersV2(const TConnectorCancelAllOrders *c) {
    if (!initialized) return NL_NOT_INITIALIZED;
    if (!routing) return NL_MARKET_ONLY;
    return c && c->password ? NL_OK : NL_INVALID_ARGS;
}

int GetPositionV2(TConnectorTradingAccountPosition *p) {
    if (!initialized) return NL_NOT_INITIALIZED;
    if (!routing) return NL_MARKET_ONLY;
    if (!p || !p->asset.ticker) return NL_INVALID_ARGS;
    p->openQuantity = position_qty > 0 ? position_qty : -position_qty;
    p->openSide = position_qty >= 0 ? 1 : 2;
    p->openAveragePrice = 128000.0;
    return NL_OK;
}

/* test-only: how many requests broke the history rules */
int StubViolations(void) { return violations; }
