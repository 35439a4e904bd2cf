// HTTP-date (RFC 9110 §5.6.7): writing IMF-fixdate, reading all three forms.
//
//   IMF-fixdate   Sun, 06 Nov 1994 08:49:37 GMT     (the only one we send)
//   RFC 850       Sunday, 06-Nov-94 08:49:37 GMT    (obsolete, two-digit year)
//   asctime       Sun Nov  6 08:49:37 1994          (obsolete, day padded by SP)
//
// Times are epoch milliseconds in an f64, as in JS; HTTP-dates carry whole
// seconds. Calendar arithmetic is the proleptic Gregorian "days from civil"
// conversion, done with integers over 400-year eras (146097 days each), so
// no table beyond the day and month names is needed.
//
// Parsing follows the grammar strictly: names are case-sensitive ("HTTP-date
// is case sensitive"; only caches are told to relax that), widths are fixed,
// and an impossible date (Feb 30, 25:00:00) is invalid. The weekday must be
// a real day name but is not checked against the date, as in nginx and Go:
// it carries no information the rest does not.
// A leap second (:60) is accepted, as the grammar allows, and lands on the
// next second.

/** Length of an IMF-fixdate: formatHttpDate() always writes this many. */
export const HTTP_DATE_LEN: i32 = 29;

// "SunMonTueWedThuFriSat": 3 bytes per day, Sunday first (epoch day 0 is a
// Thursday, index 4).
const DAY_NAMES: usize = memory.data<u8>([
  0x53, 0x75, 0x6e, 0x4d, 0x6f, 0x6e, 0x54, 0x75, 0x65, 0x57, 0x65, 0x64,
  0x54, 0x68, 0x75, 0x46, 0x72, 0x69, 0x53, 0x61, 0x74,
]);
// "JanFebMarAprMayJunJulAugSepOctNovDec": 3 bytes per month.
const MONTH_NAMES: usize = memory.data<u8>([
  0x4a, 0x61, 0x6e, 0x46, 0x65, 0x62, 0x4d, 0x61, 0x72, 0x41, 0x70, 0x72,
  0x4d, 0x61, 0x79, 0x4a, 0x75, 0x6e, 0x4a, 0x75, 0x6c, 0x41, 0x75, 0x67,
  0x53, 0x65, 0x70, 0x4f, 0x63, 0x74, 0x4e, 0x6f, 0x76, 0x44, 0x65, 0x63,
]);
// The rest of each full day name after its first three letters, for RFC 850:
// "day", "day", "sday", "nesday", "rsday", "day", "urday", 6 bytes per day,
// NUL-padded.
const DAY_NAME_TAILS: usize = memory.data<u8>([
  0x64, 0x61, 0x79, 0, 0, 0,          // Sun|day
  0x64, 0x61, 0x79, 0, 0, 0,          // Mon|day
  0x73, 0x64, 0x61, 0x79, 0, 0,       // Tue|sday
  0x6e, 0x65, 0x73, 0x64, 0x61, 0x79, // Wed|nesday
  0x72, 0x73, 0x64, 0x61, 0x79, 0,    // Thu|rsday
  0x64, 0x61, 0x79, 0, 0, 0,          // Fri|day
  0x75, 0x72, 0x64, 0x61, 0x79, 0,    // Sat|urday
]);

const MS_PER_DAY: f64 = 86400000;
// Formatting is clamped to years 0000..9999, the years four digits can show.
const MIN_MS: f64 = -62167219200000;  // 0000-01-01T00:00:00Z
const MAX_MS: f64 = 253402300799000;  // 9999-12-31T23:59:59Z

// ---- calendar ----------------------------------------------------------------

function isLeap(y: i32): bool {
  return (y & 3) == 0 && (y % 100 != 0 || y % 400 == 0);
}

function daysInMonth(y: i32, m: i32): i32 {
  if (m == 2) return isLeap(y) ? 29 : 28;
  return m == 4 || m == 6 || m == 9 || m == 11 ? 30 : 31;
}

/** Days since 1970-01-01 of the date y-m-d (m 1..12). Counting from March
 *  puts the leap day last in the year, so each era is 400 identical years. */
function daysFromCivil(y: i32, m: i32, d: i32): i32 {
  if (m <= 2) y -= 1;
  let era = (y >= 0 ? y : y - 399) / 400;
  let yearOfEra = y - era * 400;                                  // 0..399
  let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; // 0..365
  let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear;
  return era * 146097 + dayOfEra - 719468;                        // 719468: 0000-03-01 .. 1970-01-01
}

// Results of civilFromDays (module state, not exported: no allocation).
let civilYear: i32 = 0;
let civilMonth: i32 = 0;
let civilDay: i32 = 0;

/** The inverse of daysFromCivil. */
function civilFromDays(days: i32): void {
  let z = days + 719468;
  let era = (z >= 0 ? z : z - 146096) / 146097;
  let dayOfEra = z - era * 146097;                                // 0..146096
  let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365;
  let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100);
  let mp = (5 * dayOfYear + 2) / 153;                             // 0 = March
  civilDay = dayOfYear - (153 * mp + 2) / 5 + 1;
  civilMonth = mp < 10 ? mp + 3 : mp - 9;
  civilYear = yearOfEra + era * 400 + (civilMonth <= 2 ? 1 : 0);
}

// ---- formatting ----------------------------------------------------------------

@inline function put2(p: usize, v: i32): void {
  store<u8>(p, <u8>(0x30 + v / 10));
  store<u8>(p + 1, <u8>(0x30 + v % 10));
}

@inline function copy3(dst: usize, src: usize): void {
  store<u8>(dst, load<u8>(src));
  store<u8>(dst + 1, load<u8>(src + 1));
  store<u8>(dst + 2, load<u8>(src + 2));
}

/** Writes epochMs as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) at
 *  dst; returns HTTP_DATE_LEN. Milliseconds are dropped (rounded down);
 *  NaN is taken as the epoch and years beyond 0000..9999 are clamped. */
export function formatHttpDate(epochMs: f64, dst: usize): i32 {
  let ms = epochMs;
  if (isNaN(ms)) ms = 0;
  if (ms < MIN_MS) ms = MIN_MS;
  if (ms > MAX_MS) ms = MAX_MS;
  let days = <i32>Math.floor(ms / MS_PER_DAY);
  let secondOfDay = <i32>Math.floor((ms - <f64>days * MS_PER_DAY) / 1000);
  civilFromDays(days);
  let weekday = ((days % 7) + 11) % 7;                            // 0 = Sunday

  copy3(dst, DAY_NAMES + <usize>(weekday * 3));
  store<u8>(dst + 3, 0x2c);                                       // ','
  store<u8>(dst + 4, 0x20);
  putDayMonthYear(dst + 5, 0x20);                                 // "01 Dec 2026"
  store<u8>(dst + 16, 0x20);
  putClock(dst + 17, secondOfDay);
  store<u8>(dst + 25, 0x20);
  store<u8>(dst + 26, 0x47);                                      // "GMT"
  store<u8>(dst + 27, 0x4d);
  store<u8>(dst + 28, 0x54);
  return HTTP_DATE_LEN;
}

/** Length of formatLogDate's text: `01/Dec/2026:19:57:17 +0000`. */
export const LOG_DATE_LEN: i32 = 26;
/** Length of formatIsoDate's text: `2026-12-01T19:57:17.123Z`. */
export const ISO_DATE_LEN: i32 = 24;

/** The common log format's time (nginx $time_local, always in UTC). */
export function formatLogDate(epochMs: f64, dst: usize): i32 {
  const secondOfDay = civilOf(epochMs);
  putDayMonthYear(dst, 0x2f);                                     // "01/Dec/2026"
  store<u8>(dst + 11, 0x3a);
  putClock(dst + 12, secondOfDay);
  store<u8>(dst + 20, 0x20);                                      // " +0000"
  store<u8>(dst + 21, 0x2b);
  store<u32>(dst + 22, 0x30303030);
  return LOG_DATE_LEN;
}

/** ISO 8601 in UTC with milliseconds (what JSON logs and Date#toISOString use). */
export function formatIsoDate(epochMs: f64, dst: usize): i32 {
  const secondOfDay = civilOf(epochMs);
  let ms = <i32>(clampMs(epochMs) - Math.floor(clampMs(epochMs) / 1000) * 1000);
  put2(dst, civilYear / 100);
  put2(dst + 2, civilYear % 100);
  store<u8>(dst + 4, 0x2d);
  put2(dst + 5, civilMonth);
  store<u8>(dst + 7, 0x2d);
  put2(dst + 8, civilDay);
  store<u8>(dst + 10, 0x54);                                      // 'T'
  putClock(dst + 11, secondOfDay);
  store<u8>(dst + 19, 0x2e);
  store<u8>(dst + 20, <u8>(0x30 + ms / 100));
  put2(dst + 21, ms % 100);
  store<u8>(dst + 23, 0x5a);                                      // 'Z'
  return ISO_DATE_LEN;
}

/** `DD<sep>Mon<sep>YYYY` (11 bytes) of the civil date civilOf() set. */
function putDayMonthYear(dst: usize, sep: u8): void {
  put2(dst, civilDay);
  store<u8>(dst + 2, sep);
  copy3(dst + 3, MONTH_NAMES + <usize>((civilMonth - 1) * 3));
  store<u8>(dst + 6, sep);
  put2(dst + 7, civilYear / 100);
  put2(dst + 9, civilYear % 100);
}

/** `HH:MM:SS` (8 bytes) for a second of the day. */
function putClock(dst: usize, secondOfDay: i32): void {
  put2(dst, secondOfDay / 3600);
  store<u8>(dst + 2, 0x3a);                                       // ':'
  put2(dst + 3, secondOfDay / 60 % 60);
  store<u8>(dst + 5, 0x3a);
  put2(dst + 6, secondOfDay % 60);
}

function clampMs(epochMs: f64): f64 {
  let ms = epochMs;
  if (isNaN(ms)) ms = 0;
  if (ms < MIN_MS) ms = MIN_MS;
  if (ms > MAX_MS) ms = MAX_MS;
  return ms;
}

/** Sets civilYear/Month/Day for epochMs (clamped) and returns the second of the day. */
function civilOf(epochMs: f64): i32 {
  const ms = clampMs(epochMs);
  const days = <i32>Math.floor(ms / MS_PER_DAY);
  civilFromDays(days);
  return <i32>Math.floor((ms - <f64>days * MS_PER_DAY) / 1000);
}

// ---- parsing ------------------------------------------------------------------

// The two-digit year of an RFC 850 date needs to know "now" (RFC 9110: a year
// more than 50 years in the future means the century before). The core reads
// no clock, so the host tells us; until then the reference year is 2019,
// which makes the window 1970..2069, the fixed rule nginx uses.
let referenceYear: i32 = 2019;

/** Sets the time against which two-digit years are read (epoch ms). Once at
 *  startup is precise enough; once a day is exact. */
export function setDateNow(nowMs: f64): void {
  if (!(nowMs >= MIN_MS && nowMs <= MAX_MS)) return;
  civilFromDays(<i32>Math.floor(nowMs / MS_PER_DAY));
  referenceYear = civilYear;
}

/** Two ASCII digits at p as 0..99, or -1. */
@inline function digits2(p: usize): i32 {
  let a = <u32>load<u8>(p) - 0x30;
  let b = <u32>load<u8>(p + 1) - 0x30;
  return a < 10 && b < 10 ? <i32>(a * 10 + b) : -1;
}

/** Index of the 3-byte name at p in a table of `count` names, or -1. */
function nameIndex(table: usize, count: i32, p: usize): i32 {
  let a = load<u8>(p), b = load<u8>(p + 1), c = load<u8>(p + 2);
  for (let i = 0; i < count; i++) {
    let t = table + <usize>(i * 3);
    if (load<u8>(t) == a && load<u8>(t + 1) == b && load<u8>(t + 2) == c) return i;
  }
  return -1;
}

/** True if p[0..n) is a full day name ("Sunday" .. "Saturday"). */
function isLongDayName(p: usize, n: i32): bool {
  if (n < 6 || n > 9) return false;
  let day = nameIndex(DAY_NAMES, 7, p);
  if (day < 0) return false;
  let tail = DAY_NAME_TAILS + <usize>(day * 6);
  let tailLen = n - 3;
  for (let k = 0; k < tailLen; k++) {
    if (load<u8>(p + 3 + k) != load<u8>(tail + k)) return false;
  }
  return tailLen == 6 || load<u8>(tail + tailLen) == 0;
}

/** `HH:MM:SS` at p as seconds of the day, or -1. */
function timeOfDay(p: usize): i32 {
  let h = digits2(p), m = digits2(p + 3), s = digits2(p + 6);
  if (load<u8>(p + 2) != 0x3a || load<u8>(p + 5) != 0x3a) return -1;
  if (h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 60) return -1;
  return h * 3600 + m * 60 + s;
}

@inline function isGmt(p: usize): bool {
  return load<u8>(p) == 0x47 && load<u8>(p + 1) == 0x4d && load<u8>(p + 2) == 0x54;
}

/** Epoch ms of a validated date, or -1 if the day does not exist. */
function toEpochMs(y: i32, m: i32, d: i32, seconds: i32): f64 {
  if (y < 0 || m < 1 || m > 12 || d < 1 || d > daysInMonth(y, m) || seconds < 0) return -1;
  return (<f64>daysFromCivil(y, m, d) * 86400 + <f64>seconds) * 1000;
}

/** Parses an HTTP-date in any of the three forms; returns epoch ms (a whole
 *  number of seconds), or -1 if it is not a valid date. Surrounding spaces
 *  and tabs are ignored. Dates before 1970 are negative multiples of 1000,
 *  so -1 is never a date. */
export function parseHttpDate(src: usize, len: i32): f64 {
  while (len > 0 && (load<u8>(src) == 0x20 || load<u8>(src) == 0x09)) { src++; len--; }
  while (len > 0 && (load<u8>(src + len - 1) == 0x20 || load<u8>(src + len - 1) == 0x09)) len--;
  if (len < 24) return -1;

  if (load<u8>(src + 3) == 0x2c) {
    // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`
    if (len != 29 || nameIndex(DAY_NAMES, 7, src) < 0) return -1;
    if (load<u8>(src + 4) != 0x20 || load<u8>(src + 7) != 0x20 || load<u8>(src + 11) != 0x20 ||
        load<u8>(src + 16) != 0x20 || load<u8>(src + 25) != 0x20 || !isGmt(src + 26)) return -1;
    let hi = digits2(src + 12), lo = digits2(src + 14);
    if ((hi | lo) < 0) return -1;
    return toEpochMs(hi * 100 + lo, nameIndex(MONTH_NAMES, 12, src + 8) + 1,
                     digits2(src + 5), timeOfDay(src + 17));
  }

  if (load<u8>(src + 3) == 0x20) {
    // asctime: `Sun Nov  6 08:49:37 1994`, the day is 2DIGIT or SP DIGIT
    if (len != 24 || nameIndex(DAY_NAMES, 7, src) < 0) return -1;
    if (load<u8>(src + 7) != 0x20 || load<u8>(src + 10) != 0x20 || load<u8>(src + 19) != 0x20) return -1;
    let day = load<u8>(src + 8) == 0x20 ? <i32>load<u8>(src + 9) - 0x30 : digits2(src + 8);
    if (day < 0 || day > 9 && load<u8>(src + 8) == 0x20) return -1;
    let hi = digits2(src + 20), lo = digits2(src + 22);
    if ((hi | lo) < 0) return -1;
    return toEpochMs(hi * 100 + lo, nameIndex(MONTH_NAMES, 12, src + 4) + 1,
                     day, timeOfDay(src + 11));
  }

  // RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`, a full day name of n letters
  let n = len - 24;
  if (!isLongDayName(src, n)) return -1;
  let p = src + <usize>n;
  if (load<u8>(p) != 0x2c || load<u8>(p + 1) != 0x20 || load<u8>(p + 4) != 0x2d ||
      load<u8>(p + 8) != 0x2d || load<u8>(p + 11) != 0x20 || load<u8>(p + 20) != 0x20 ||
      !isGmt(p + 21)) return -1;
  let yy = digits2(p + 9);
  if (yy < 0) return -1;
  let year = referenceYear - referenceYear % 100 + yy;
  if (year > referenceYear + 50) year -= 100;
  else if (year <= referenceYear - 50) year += 100;
  return toEpochMs(year, nameIndex(MONTH_NAMES, 12, p + 5) + 1, digits2(p + 2), timeOfDay(p + 12));
}
