/*
 * A stand-in for Nelogica's ProfitDLL (4.x API) for tests on Linux.
 *
 * It follows Nelogica's own declarations and examples (the public repository
 * rlquilez/nelogica-profitdll: the manual, and the Python, C++, Delphi and C#
 * examples), not tickvault's binding, so a misreading in the binding shows up as a
 * failing test. It exports the same symbols with the same signatures (cdecl here,
 * stdcall in the real DLL), keeps the callbacks it is given, and fires scripted
 * events from its own single callback thread, as the real DLL does:
 *
 *   - after login: state changes (login, market, activation; with routing, routing
 *     connecting then TVSTUB_ROUTING_STATE, default 5; 1 leaves it connecting);
 *   - after SubscribeTicker: TVSTUB_TRADES trades (default 40) through the V2 trade
 *     callback (opaque pointer + TranslateTrade), with trade types 14 and 33 (new in
 *     4.0.0.41) once each, one edit of an earlier trade and one edit of a trade
 *     number never sent; at 1/2 a "partially connected" market state (6) during
 *     which 3 trades are lost, then back to 4; at 3/4 a market disconnect and
 *     reconnect after which 5 s of trades are missing (trade dates are 03/11/2025,
 *     or today with TVSTUB_TODAY=1);
 *   - after SubscribeOfferBook: a full book in pages (the bid side in two, the
 *     ask side in one; trailing flags 2 first page, 1 last page), then add, edits
 *     with quantity deltas (partial fills: negative), delete and delete-from;
 *   - a subscription to a ticker starting with "BAD" returns NL_OK and fires the
 *     invalid-ticker callback (SetInvalidTickerCallback), as the manual says;
 *   - after GetHistoryTrades: trades spread over the requested window through the
 *     V2 history callback, progress 1..100, the last one flagged "last packet"; an
 *     unknown ticker gives NL_INVALID_TICKER (with TVSTUB_HISTORY_INVALID_CALLBACK=1,
 *     NL_OK and the invalid-ticker callback instead);
 *   - orders: SendOrder returns int64 ids above 2^32 and fires the order callback
 *     (TConnectorOrderIdentifier; ClOrdIDs CLORD-1, CLORD-2, ...); GetOrderDetails
 *     fills a TConnectorOrderOut in two calls as Nelogica's examples do (the first gives
 *     the string lengths, the second, with buffers of those lengths, the strings), for
 *     the order named by its local id or (local id 0 or -1) by its ClOrdID; orders
 *     outlive DLLFinalize (they are the broker's), so a new session finds them.
 *     A market order goes New (0), then PartiallyFilled (1) with one contract at
 *     TVSTUB_FILL_PRICE (default 128000) when it has more than one, then Filled (2),
 *     the rest 5 points worse; a limit order stays New; a quantity above
 *     TVSTUB_MAX_ORDER_QTY (default 100) is accepted and then Rejected (8) by the
 *     broker with a text message; a cancel makes a working order Canceled (4).
 *     SendOrder while routing is not connected (TVSTUB_ROUTING_STATE not 2 or 5)
 *     gives NL_NO_LOGIN (the stand-in's choice: the manual names no code for it);
 *     GetPositionV2 fills the 216-byte TConnectorTradingAccountPosition (version 1
 *     needs PositionType, version 2 adds EventID).
 *
 * Memory ownership as in the C++, Delphi and C# examples: full-book arrays belong
 * to the caller once delivered, and must be released with FreePointer(p, size),
 * size being the array header's total-size field. The stand-in counts the calls,
 * the arrays still outstanding and the bad ones (unknown pointer: a double free, or
 * a wrong size); FreePointer scribbles over an array before freeing it. Every other
 * pointer handed to a callback is overwritten and freed as soon as it returns.
 *
 * Bad arguments return the documented NL error codes: a history start older than
 * 30 days gives NL_HISTORY_PERIOD_LIMIT; an exchange other than B or F gives
 * NL_EXCHANGE_UNKNOWN; a WIN/WDO request over more than one day, or a second
 * request for a symbol while one runs, gives NL_INVALID_ARGS and is counted
 * (StubViolations) so tests can assert the adapter never does it.
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
#define NL_EXCHANGE_UNKNOWN ((int)0x8000000Fu)
#define NL_INVALID_TICKER ((int)0x8000001Fu)
#define NL_HISTORY_PERIOD_LIMIT ((int)0x8000002Eu)

/* TAssetIDRec is a Delphi "packed record": 20 bytes */
typedef struct __attribute__((packed)) {
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
    int64_t dailyQuantityD1;
    int64_t dailyQuantityD2;
    int64_t dailyQuantityD3;
    int64_t dailyQuantityBlocked;
    int64_t dailyQuantityPending;
    int64_t dailyQuantityAlloc;
    int64_t dailyQuantityProvision;
    int64_t dailyQuantity;
    int64_t dailyQuantityAvailable;
    uint8_t positionType; /* V1: 1 day trade, 2 consolidated; set by the caller */
    int64_t eventId;      /* V2 */
} TConnectorTradingAccountPosition;

/* GetOrderDetails' structures (Nelogica's ProfitDataTypesU.pas and profitTypes.py) */
typedef struct {
    uint8_t version;
    int32_t brokerId;
    wchar_t accountId[100];
    int32_t accountIdLength;
    wchar_t subAccountId[100];
    int32_t subAccountIdLength;
    int64_t reserved;
} TConnectorAccountIdentifierOut;

typedef struct {
    uint8_t version;
    wchar_t *ticker;
    int32_t tickerLength;
    wchar_t *exchange;
    int32_t exchangeLength;
    uint8_t feedType;
} TConnectorAssetIdentifierOut;

typedef struct {
    uint8_t version;
    TConnectorOrderIdentifier orderId; /* in: the order asked for */
    TConnectorAccountIdentifierOut account;
    TConnectorAssetIdentifierOut asset;
    int64_t quantity;
    int64_t tradedQuantity;
    int64_t leavesQuantity;
    double price;
    double stopPrice;
    double averagePrice;
    uint8_t orderSide;
    uint8_t orderType;
    uint8_t orderStatus;
    uint8_t validityType;
    SYSTEMTIME date;
    SYSTEMTIME lastUpdate;
    SYSTEMTIME closeDate;
    SYSTEMTIME validityDate;
    wchar_t *textMessage;
    int32_t textMessageLength;
    int64_t eventId; /* V1 */
} TConnectorOrderOut;

_Static_assert(sizeof(TAssetID) == 20, "TAssetIDRec is packed");
_Static_assert(sizeof(TConnectorOrderOut) == 1040, "1040 bytes on x64");
_Static_assert(sizeof(TConnectorTradingAccountPosition) == 216, "216 bytes on x64");

typedef void (*StateCb)(int, int);
typedef void (*ProgressCb)(TAssetID, int);
typedef void (*TradeCbV2)(TConnectorAssetIdentifier, size_t, unsigned int);
typedef void (*OfferBookCbV2)(TAssetID, int, int, int, int64_t, int, int64_t, double, char, char,
                              char, char, char, wchar_t *, void *, void *);
typedef void (*OrderCb)(TConnectorOrderIdentifier);
typedef void (*InvalidTickerCb)(TConnectorAssetIdentifier);
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
static InvalidTickerCb invalid_cb;
static int violations = 0;
static int routing_state = 5;
static int64_t next_order_id = 5000000001LL; /* above 2^32: needs an int64 restype */
static int64_t position_qty = 0, bought = 0, sold = 0;
static int64_t sent_ids[256];
static int n_sent = 0;

/* The orders sent, as GetOrderDetails reports them (TConnectorOrderStatus codes). */
enum { OS_NEW = 0, OS_PARTIALLY_FILLED = 1, OS_FILLED = 2, OS_CANCELED = 4, OS_REJECTED = 8 };
typedef struct {
    int64_t id;
    int broker;
    wchar_t account[32], ticker[32], exchange[8], clord[16], text[64];
    uint8_t side, type, status;
    int64_t qty, traded;
    double price, avg;
} StubOrder;
static StubOrder orders[256];

static StubOrder *find_order(int64_t id) {
    for (int k = 0; k < n_sent; k++)
        if (orders[k].id == id) return &orders[k];
    return NULL;
}

/* An order by its identifier: the local id, or (local id 0 or -1) the ClOrdID, as
   TConnectorOrderIdentifier allows; the ClOrdID outlives the DLL session. */
static StubOrder *find_order_by(const TConnectorOrderIdentifier *oid) {
    if (oid->localOrderId > 0) return find_order(oid->localOrderId);
    if (!oid->clOrderId) return NULL;
    for (int k = 0; k < n_sent; k++)
        if (wcscmp(orders[k].clord, oid->clOrderId) == 0) return &orders[k];
    return NULL;
}

enum { JOB_LOGIN, JOB_TRADES, JOB_BOOK, JOB_HISTORY, JOB_ORDER, JOB_INVALID, JOB_STOP,
       JOB_ORDER_LIFE, JOB_CANCEL };
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
static unsigned history_requests = 0; /* numbers history trades apart from one request to the next */

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

static void trade_at(TConnectorTrade *t, uint16_t y, uint16_t m, uint16_t d, int ms) {
    t->tradeDate = (SYSTEMTIME){y, m, 1, d, 10, 0, (uint16_t)(ms / 1000), (uint16_t)(ms % 1000)};
}

static void script_trades(Job *j) {
    int n = env_int("TVSTUB_TRADES", 40);
    uint16_t y, m, d;
    trade_day(&y, &m, &d);
    int jump_ms = 0;
    int lost_from = n / 2, lost_to = n / 2 + 3; /* lost while partially connected */
    for (int i = 0; i < n && running; i++) {
        if (i == lost_from && state_cb) state_cb(2, 6); /* partially connected */
        if (i >= lost_from && i < lost_to) continue;      /* these callbacks never come */
        if (i == lost_to && state_cb) state_cb(2, 4);
        if (i == 3 * n / 4 && state_cb) { /* the market link drops; 5 s are missed */
            state_cb(2, 0);
            state_cb(2, 1);
            state_cb(2, 4);
            jump_ms = 5000;
        }
        TConnectorTrade t = {0};
        trade_at(&t, y, m, d, i + jump_ms);
        t.tradeNumber = 1000 + i;
        t.price = 128000.0 + 5.0 * (i % 7);
        t.quantity = 1 + i % 5;
        t.volume = t.price * t.quantity * 0.2;
        t.buyAgent = 10 + i % 3;
        t.sellAgent = 20 + i % 4;
        t.tradeType = (uint8_t)(i == 7 ? 14 : i == 8 ? 33 : 2 + i % 2); /* 4.0.0.41 types */
        fire_trade(trade_cb, j->ticker, j->exchange, &t, 0);
        if (i == 10) { /* edit of trade 1005: new quantity and price */
            TConnectorTrade e = {0};
            trade_at(&e, y, m, d, 5);
            e.tradeNumber = 1005;
            e.price = 128100.0;
            e.quantity = 9;
            e.volume = e.price * 9 * 0.2;
            e.buyAgent = 77;
            e.sellAgent = 88;
            e.tradeType = 2;
            fire_trade(trade_cb, j->ticker, j->exchange, &e, 1);
        }
        if (i == 12) { /* an edit whose trade number was never sent (the manual keys
                          edits by date, the examples by number) */
            TConnectorTrade e = {0};
            trade_at(&e, y, m, d, 6);
            e.tradeNumber = 990;
            e.price = 128200.0;
            e.quantity = 4;
            e.volume = e.price * 4 * 0.2;
            e.buyAgent = 78;
            e.sellAgent = 89;
            e.tradeType = 3;
            fire_trade(trade_cb, j->ticker, j->exchange, &e, 1);
        }
    }
}

static void put(unsigned char **p, const void *v, size_t n) {
    memcpy(*p, v, n);
    *p += n;
}

/* ------------------------------------------------------------------ full-book arrays */
/* Arrays handed to the offer-book callback belong to the caller, who frees them with
   FreePointer(p, size). The stand-in keeps a registry to count what is left. */
#define MAX_ARRAYS 256
static void *arrays[MAX_ARRAYS];
static int array_sizes[MAX_ARRAYS];
static int free_calls = 0, bad_frees = 0, arrays_delivered = 0;

static void register_array(void *p, int size) {
    pthread_mutex_lock(&mu);
    for (int k = 0; k < MAX_ARRAYS; k++) {
        if (!arrays[k]) {
            arrays[k] = p;
            array_sizes[k] = size;
            arrays_delivered++;
            break;
        }
    }
    pthread_mutex_unlock(&mu);
}

/* Offers of one side in list order: position count-1 first, position 0 (the best) last.
   Bids: 127980, 127985, ... up to the best; asks: 128020, 128015, ... down to the best. */
static void book_offer(int side, int i, double *price, int64_t *qty, int32_t *agent,
                       int64_t *offer) {
    *price = side == 0 ? 127980.0 + 5.0 * i : 128020.0 - 5.0 * i;
    *qty = 10 * (i + 1) + side;
    *agent = 100 + i + 10 * side;
    *offer = 90000 + 100 * side + i;
}

/* One page of a full-book array (V2 layout): int32 count, int32 total size, packed
   entries (double price, int64 qty, int32 agent, int64 offer id, uint16 n, n bytes of
   date), uint32 flags (1 last page, 2 first page). Offers [from, to) of the side. */
static void *book_page(int side, int from, int to, uint32_t flags) {
    const char *date = "03/11/2025 10:00:00.000";
    uint16_t dn = (uint16_t)strlen(date);
    size_t entry = 8 + 8 + 4 + 8 + 2 + dn;
    int count = to - from;
    size_t total = 8 + entry * (size_t)count + 4;
    unsigned char *buf = malloc(total), *p = buf;
    int32_t c = count, t = (int32_t)total;
    put(&p, &c, 4);
    put(&p, &t, 4);
    for (int i = from; i < to; i++) {
        double price;
        int64_t qty, offer;
        int32_t agent;
        book_offer(side, i, &price, &qty, &agent, &offer);
        put(&p, &price, 8);
        put(&p, &qty, 8);
        put(&p, &agent, 4);
        put(&p, &offer, 8);
        put(&p, &dn, 2);
        put(&p, date, dn);
    }
    put(&p, &flags, 4);
    register_array(buf, (int)total);
    return buf;
}

/* An offer-book V2 update with a date; the date string dies when the callback returns. */
static void book_update(TAssetID a, int action, int position, int side, int64_t qty, int agent,
                        int64_t offer, double price, char has_price, char has_qty,
                        char has_offer, char has_agent, const wchar_t *when) {
    wchar_t date[32];
    wcsncpy(date, when, 31);
    date[31] = 0;
    book_cb(a, action, position, side, qty, agent, offer, price, has_price, has_qty, 1,
            has_offer, has_agent, date, NULL, NULL);
    wmemset(date, L'#', 31);
}

static void script_book(Job *j) {
    TAssetID a = {j->ticker, j->exchange, 0};
    wchar_t full_date[32];
    /* the full book: bids (5 offers) in two pages, asks (3 offers) in one */
    wcscpy(full_date, L"03/11/2025 10:00:01.000");
    book_cb(a, 4, 0, 0, 0, 0, 0, 0.0, 0, 0, 1, 0, 0, full_date, book_page(1, 0, 3, 1 | 2),
            book_page(0, 0, 3, 2));
    book_cb(a, 4, 0, 0, 0, 0, 0, 0.0, 0, 0, 1, 0, 0, full_date, NULL, book_page(0, 3, 5, 1));
    wmemset(full_date, L'#', 31);
    /* a new best bid at position 0 (the end of the bid list) */
    book_update(a, 0, 0, 0, 7, 55, 91000, 128000.0, 1, 1, 1, 1, L"03/11/2025 10:00:01.250");
    /* a partial fill of the best ask (31 -> 21): a quantity delta only */
    book_update(a, 1, 0, 1, -10, 0, 0, 0.0, 0, 1, 0, 0, L"03/11/2025 10:00:01.400");
    /* the ask at position 1 (21): partly filled (-8) and now shown by agent 66 */
    book_update(a, 1, 1, 1, -8, 66, 0, 0.0, 0, 1, 0, 1, L"03/11/2025 10:00:01.500");
    /* the best bid (7) partly filled (-3), and the bid at position 2 (40) grows (+5) */
    book_update(a, 1, 0, 0, -3, 0, 0, 0.0, 0, 1, 0, 0, L"03/11/2025 10:00:01.600");
    book_update(a, 1, 2, 0, 5, 0, 0, 0.0, 0, 1, 0, 0, L"03/11/2025 10:00:01.650");
    /* delete the bid at position 5 (the first in the list) */
    book_update(a, 2, 5, 0, 0, 0, 0, 0.0, 0, 0, 0, 0, L"03/11/2025 10:00:01.750");
    /* delete asks from position 0 to the end of the list */
    book_update(a, 3, 0, 1, 0, 0, 0, 0.0, 0, 0, 0, 0, L"03/11/2025 10:00:02.000");
}

static void script_history(Job *j) {
    int n = env_int("TVSTUB_HISTORY_TRADES", 100);
    unsigned base = 500 + 1000 * history_requests++; /* trade i of request k: 500 + 1000k + i */
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
        t.tradeNumber = base + (unsigned)i;
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

/* One order-change callback with the order's current state (the ClOrdID string dies
   when the callback returns). */
static void order_changed(StubOrder *o, uint8_t status) {
    pthread_mutex_lock(&mu);
    o->status = status;
    wchar_t clord[16];
    wcscpy(clord, o->clord);
    int64_t id = o->id;
    pthread_mutex_unlock(&mu);
    TConnectorOrderIdentifier oid = {0, id, clord};
    if (order_cb) order_cb(oid);
    wmemset(clord, L'#', 15);
}

static void order_life(int64_t id, int cancel) {
    StubOrder *o = find_order(id);
    if (!o) return;
    if (cancel) {
        if (o->status == OS_NEW || o->status == OS_PARTIALLY_FILLED) order_changed(o, OS_CANCELED);
        return;
    }
    order_changed(o, OS_NEW);
    if (o->qty > env_int("TVSTUB_MAX_ORDER_QTY", 100)) {
        pthread_mutex_lock(&mu);
        swprintf(o->text, 64, L"Rejeitada: quantidade %lld acima do limite", (long long)o->qty);
        pthread_mutex_unlock(&mu);
        order_changed(o, OS_REJECTED);
        return;
    }
    if (o->type != 1) return; /* limit and stop orders stay working */
    double base = env_int("TVSTUB_FILL_PRICE", 128000), worse = o->side == 1 ? 5.0 : -5.0;
    if (o->qty > 1) {
        pthread_mutex_lock(&mu);
        o->traded = 1;
        o->avg = base;
        pthread_mutex_unlock(&mu);
        order_changed(o, OS_PARTIALLY_FILLED);
    }
    pthread_mutex_lock(&mu);
    o->avg = o->qty > 1 ? (base + (base + worse) * (double)(o->qty - 1)) / (double)o->qty : base;
    o->traded = o->qty;
    pthread_mutex_unlock(&mu);
    order_changed(o, OS_FILLED);
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
            if (routing) {
                state_cb(1, 1); /* routing connecting */
                if (routing_state != 1) state_cb(1, routing_state);
            }
        } else if (kind == JOB_TRADES && trade_cb) {
            script_trades(j);
        } else if (kind == JOB_BOOK && book_cb) {
            script_book(j);
        } else if (kind == JOB_HISTORY && history_cb) {
            script_history(j);
        } else if (kind == JOB_ORDER && order_cb) {
            TConnectorOrderIdentifier id = {0, j->order_id, L"CLORD-1"};
            order_cb(id);
        } else if (kind == JOB_ORDER_LIFE || kind == JOB_CANCEL) {
            order_life(j->order_id, kind == JOB_CANCEL);
        } else if (kind == JOB_INVALID && invalid_cb) {
            wchar_t ticker[32], exchange[8];
            wcscpy(ticker, j->ticker);
            wcscpy(exchange, j->exchange);
            TConnectorAssetIdentifier a = {0, ticker, exchange, 0};
            invalid_cb(a);
            wmemset(ticker, L'#', 31); /* the strings die when the callback returns */
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
    routing_state = env_int("TVSTUB_ROUTING_STATE", 5);
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
    book_cb = NULL; order_cb = NULL; invalid_cb = NULL;
    return NL_OK;
}

int SetStateCallback(StateCb cb) { state_cb = cb; return NL_OK; }
int SetSerieProgressCallback(ProgressCb cb) { progress_cb = cb; return NL_OK; }
int SetTradeCallbackV2(TradeCbV2 cb) { trade_cb = cb; return NL_OK; }
int SetHistoryTradeCallbackV2(TradeCbV2 cb) { history_cb = cb; return NL_OK; }
int SetOfferBookCallbackV2(OfferBookCbV2 cb) { book_cb = cb; return NL_OK; }
int SetOrderCallback(OrderCb cb) { order_cb = cb; return NL_OK; }
int SetInvalidTickerCallback(InvalidTickerCb cb) { invalid_cb = cb; return NL_OK; }

static int check_ticker(const wchar_t *ticker, const wchar_t *exchange) {
    if (!initialized) return NL_NOT_INITIALIZED;
    if (!ticker || !*ticker || !exchange) return NL_INVALID_ARGS;
    if (wcscmp(exchange, L"B") && wcscmp(exchange, L"F")) return NL_EXCHANGE_UNKNOWN;
    return NL_OK;
}

static int unknown_ticker(const wchar_t *ticker) { return wcsncmp(ticker, L"BAD", 3) == 0; }

/* A subscription: an unknown ticker is accepted and reported through the invalid-ticker
   callback (the manual: "um evento vai ser disparado na callback definida
   SetInvalidTickerCallback"). */
static int subscribe(int kind, const wchar_t *ticker, const wchar_t *exchange) {
    int rc = check_ticker(ticker, exchange);
    if (rc == NL_OK) push(job(unknown_ticker(ticker) ? JOB_INVALID : kind, ticker, exchange));
    return rc;
}

int SubscribeTicker(const wchar_t *ticker, const wchar_t *exchange) {
    return subscribe(JOB_TRADES, ticker, exchange);
}

int UnsubscribeTicker(const wchar_t *ticker, const wchar_t *exchange) {
    return check_ticker(ticker, exchange);
}

int SubscribeOfferBook(const wchar_t *ticker, const wchar_t *exchange) {
    return subscribe(JOB_BOOK, ticker, exchange);
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
    if (unknown_ticker(ticker)) { /* TVSTUB_HISTORY_INVALID_CALLBACK=1: as a subscription */
        if (!env_int("TVSTUB_HISTORY_INVALID_CALLBACK", 0)) return NL_INVALID_TICKER;
        push(job(JOB_INVALID, ticker, exchange));
        return NL_OK;
    }
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
    if (routing_state != 2 && routing_state != 5) return NL_NO_LOGIN;
    if (!o || o->version < 1 || (o->orderSide != 1 && o->orderSide != 2) || o->quantity <= 0 ||
        (o->orderType != 1 && o->orderType != 2 && o->orderType != 4) || !o->asset.ticker ||
        !o->password || (o->orderType == 1 && o->price != -1.0) ||
        (o->orderType != 4 && o->stopPrice != -1.0))
        return NL_INVALID_ARGS;
    pthread_mutex_lock(&mu);
    if (n_sent >= 256) {
        pthread_mutex_unlock(&mu);
        return NL_INTERNAL_ERROR;
    }
    int64_t id = next_order_id++;
    StubOrder *so = &orders[n_sent];
    memset(so, 0, sizeof *so);
    so->id = id;
    so->broker = o->account.brokerId;
    if (o->account.accountId) wcsncpy(so->account, o->account.accountId, 31);
    wcsncpy(so->ticker, o->asset.ticker, 31);
    if (o->asset.exchange) wcsncpy(so->exchange, o->asset.exchange, 7);
    swprintf(so->clord, 16, L"CLORD-%d", n_sent + 1);
    so->side = o->orderSide;
    so->type = o->orderType;
    so->qty = o->quantity;
    so->price = o->price;
    so->status = OS_NEW;
    sent_ids[n_sent++] = id;
    position_qty += o->orderSide == 1 ? o->quantity : -o->quantity;
    if (o->orderSide == 1) bought += o->quantity; else sold += o->quantity;
    pthread_mutex_unlock(&mu);
    Job *j = job(JOB_ORDER_LIFE, NULL, NULL);
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
            Job *j = job(JOB_CANCEL, NULL, NULL);
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

static int copy_out(wchar_t *dst, const wchar_t *src, int32_t *length) {
    int32_t n = (int32_t)wcslen(src);
    if (dst) { /* a buffer of the length the first call gave (and its NUL) */
        if (*length < n) return NL_INVALID_ARGS;
        wmemcpy(dst, src, (size_t)n);
        dst[n] = 0;
    }
    *length = n;
    return NL_OK;
}

/* The order named by orderId.localOrderId. Called with NULL string pointers it fills
   the lengths (and every other field); called again with buffers of those lengths it
   copies the strings too (Nelogica's examples call it twice). */
int GetOrderDetails(TConnectorOrderOut *o) {
    if (!initialized) return NL_NOT_INITIALIZED;
    if (!routing) return NL_MARKET_ONLY;
    if (!o) return NL_INVALID_ARGS;
    if (o->version > 1) return NL_VERSION_NOT_SUPPORTED;
    pthread_mutex_lock(&mu);
    StubOrder *so = find_order_by(&o->orderId);
    if (!so) {
        pthread_mutex_unlock(&mu);
        return NL_NOT_FOUND;
    }
    o->account.version = 0;
    o->account.brokerId = so->broker;
    wcsncpy(o->account.accountId, so->account, 99);
    o->account.accountIdLength = (int32_t)wcslen(so->account);
    o->account.subAccountId[0] = 0;
    o->account.subAccountIdLength = 0;
    int rc = copy_out(o->asset.ticker, so->ticker, &o->asset.tickerLength);
    if (rc == NL_OK) rc = copy_out(o->asset.exchange, so->exchange, &o->asset.exchangeLength);
    if (rc == NL_OK) rc = copy_out(o->textMessage, so->text, &o->textMessageLength);
    o->quantity = so->qty;
    o->tradedQuantity = so->traded;
    o->leavesQuantity = so->status == OS_NEW || so->status == OS_PARTIALLY_FILLED
                            ? so->qty - so->traded : 0;
    o->price = so->price;
    o->stopPrice = -1.0;
    o->averagePrice = so->avg;
    o->orderSide = so->side;
    o->orderType = so->type;
    o->orderStatus = so->status;
    o->validityType = 0;
    if (o->version >= 1) o->eventId = 0;
    pthread_mutex_unlock(&mu);
    return rc;
}

/* Fills the whole 216-byte structure (the version 0 fields, the position type read at
   offset 200 from version 1, the event id at 208 from version 2). Day trade: today's
   orders; consolidated: plus 7 bought on D-1. */
int GetPositionV2(TConnectorTradingAccountPosition *p) {
    if (!initialized) return NL_NOT_INITIALIZED;
    if (!routing) return NL_MARKET_ONLY;
    if (!p || !p->asset.ticker) return NL_INVALID_ARGS;
    if (p->version > 2) return NL_VERSION_NOT_SUPPORTED;
    int consolidated = 1;
    if (p->version >= 1) {
        if (p->positionType != 1 && p->positionType != 2) return NL_INVALID_ARGS;
        consolidated = p->positionType == 2;
    }
    int64_t carried = consolidated ? 7 : 0, net = position_qty + carried;
    p->openQuantity = net > 0 ? net : -net;
    p->openSide = net >= 0 ? 1 : 2;
    p->openAveragePrice = 128000.0;
    p->dailyAverageSellPrice = sold ? 128005.0 : 0.0;
    p->dailySellQuantity = sold;
    p->dailyAverageBuyPrice = bought ? 127995.0 : 0.0;
    p->dailyBuyQuantity = bought;
    p->dailyQuantityD1 = carried;
    p->dailyQuantityD2 = 0;
    p->dailyQuantityD3 = 0;
    p->dailyQuantityBlocked = 1;
    p->dailyQuantityPending = 2;
    p->dailyQuantityAlloc = 3;
    p->dailyQuantityProvision = 4;
    p->dailyQuantity = net;
    p->dailyQuantityAvailable = net - 1;
    if (p->version >= 2) p->eventId = 4242;
    return NL_OK;
}

/* The caller releases a full-book array it was given: pointer and the header's size. */
int FreePointer(void *pointer, int size) {
    pthread_mutex_lock(&mu);
    free_calls++;
    for (int k = 0; k < MAX_ARRAYS; k++) {
        if (arrays[k] == pointer && pointer) {
            if (array_sizes[k] != size) break; /* the wrong size: refused */
            arrays[k] = NULL;
            pthread_mutex_unlock(&mu);
            memset(pointer, 0xCD, (size_t)size);
            free(pointer);
            return NL_OK;
        }
    }
    bad_frees++; /* not an outstanding array (freed twice, or never given) or a wrong size */
    pthread_mutex_unlock(&mu);
    return NL_INVALID_ARGS;
}

/* test-only: FreePointer calls, arrays handed over and not freed, bad calls */
int StubFreePointerCalls(void) { return free_calls; }
int StubArraysDelivered(void) { return arrays_delivered; }
int StubBadFrees(void) { return bad_frees; }
int StubArraysOutstanding(void) {
    pthread_mutex_lock(&mu);
    int n = 0;
    for (int k = 0; k < MAX_ARRAYS; k++) n += arrays[k] != NULL;
    pthread_mutex_unlock(&mu);
    return n;
}

/* test-only: how many requests broke the history rules */
int StubViolations(void) { return violations; }
