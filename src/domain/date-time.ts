/**
 * An RFC 3339 date-time (`2026-12-31T23:00:00Z`, `2026-12-31T23:00:00.5+01:00`) → epoch ms, or undefined for
 * anything else. Strict where `Date.parse` is lenient: it takes `2026-02-30` (as 2 March), `24:00`, offsets without
 * a colon and dates without a zone (read as local time), none of which is RFC 3339. A space instead of the `T` is
 * taken, as RFC 3339 allows and the OpenAPI `date-time` check (ajv-formats) does; no leap seconds. Fractions of a
 * millisecond are dropped.
 */
const RFC_3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

export function parseDateTime(text: string): number | undefined {
  const m = RFC_3339.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const millis = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  const sign = m[8] === '-' ? -1 : 1;
  const offsetHours = m[9] === undefined ? 0 : Number(m[9]);
  const offsetMinutes = m[10] === undefined ? 0 : Number(m[10]);
  const daysInMonth = new Date(Date.UTC(2000, month, 0)).getUTCDate() - (month === 2 && !isLeapYear(year) ? 1 : 0);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth) return undefined;
  if (hour > 23 || minute > 59 || second > 59 || offsetHours > 23 || offsetMinutes > 59) return undefined;
  const date = new Date(0);
  // setUTCFullYear, not Date.UTC: that one reads years 0-99 as 1900-1999.
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, millis);
  return date.getTime() - sign * (offsetHours * 60 + offsetMinutes) * 60_000;
}

const isLeapYear = (y: number): boolean => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
