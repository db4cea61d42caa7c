<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * One collector over HTTP: bounded time, retries that cannot double-count,
 * and answers reduced to what an install needs to know. It throws
 * {@see SendException}; {@see Client} is the facade that never throws.
 */
final class Collector
{
    private readonly string $base;
    private readonly Transport $transport;

    /**
     * @param string         $baseUrl   collector base URL (`https://stats.example.org`)
     * @param Options        $options   timeouts, retries and time budget
     * @param Transport|null $transport null uses {@see CurlTransport}
     */
    public function __construct(string $baseUrl, private readonly Options $options, ?Transport $transport = null)
    {
        $this->base = rtrim($baseUrl, '/');
        $this->transport = $transport ?? new CurlTransport();
    }

    /**
     * The collector's base URL, without a trailing slash.
     */
    public function baseUrl(): string
    {
        return $this->base;
    }

    /**
     * The collector's catalog (`GET /api/v1/catalog`), decoded: what it
     * stores, to check a report with {@see Report::checkAgainst()}.
     *
     * @return array<string, mixed>
     *
     * @throws SendException when the collector refused or could not be reached in time,
     *                       or the answer is not a catalog
     */
    public function fetchCatalog(): array
    {
        [$answer, $attempts] = $this->request('GET', '/api/v1/catalog', null);
        if ($answer->status !== 200) {
            throw self::refused($answer, $attempts);
        }
        $catalog = json_decode($answer->body, true);
        if (!is_array($catalog) || !is_array($catalog['products'] ?? null)) {
            throw new SendException('unexpected answer from the collector: not a catalog', 200, $attempts);
        }

        return $catalog;
    }

    /**
     * Posts a report body (as built by {@see Report::body()}) to
     * `POST /api/v1/reports`. Every attempt sends the same bytes, hence the
     * same `report_id`: a report that got through on an attempt whose answer
     * was lost is recognised as a duplicate, never counted twice.
     *
     * @throws SendException when the collector refused the report or could not be reached in time
     */
    public function sendReport(string $body): Delivery
    {
        [$answer, $attempts] = $this->request('POST', '/api/v1/reports', $body);
        $json = json_decode($answer->body, true);
        if ($answer->status === 202) {
            $ignored = is_array($json) && is_array($json['ignored'] ?? null)
                ? array_values(array_filter($json['ignored'], 'is_string'))
                : [];

            return new Delivery(Delivery::ACCEPTED, $ignored, $attempts);
        }
        if ($answer->status === 200) {
            return new Delivery(Delivery::DUPLICATE, [], $attempts);
        }
        throw self::refused($answer, $attempts);
    }

    /**
     * Asks the collector to forget an install: `POST /api/v1/erasures` with
     * the id (and the product, when given) in a JSON body, never in the URL,
     * where access logs on the way would record it. The answer is the same
     * whether or not the collector had anything stored.
     *
     * @param string      $instanceId the install's id
     * @param string|null $product    the product it reported as; null is the catalog's first
     *
     * @throws SendException when the collector refused or could not be reached in time
     */
    public function forget(string $instanceId, ?string $product = null): void
    {
        $id = Uuid::normalize($instanceId);
        if ($id === null) {
            throw new SendException('the instance id is not a UUID', null, 0);
        }
        $request = ['instance_id' => $id];
        if ($product !== null) {
            $request['product'] = $product;
        }
        $body = json_encode($request, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
        [$answer, $attempts] = $this->request('POST', '/api/v1/erasures', $body);
        if ($answer->status < 200 || $answer->status > 299) {
            throw self::refused($answer, $attempts);
        }
    }

    /**
     * One request with the retry policy and the time budget applied.
     *
     * @return array{0: Response, 1: int} the final answer and the attempts made
     *
     * @throws SendException
     */
    private function request(string $method, string $path, ?string $body): array
    {
        $url = $this->base . $path;
        $deadline = self::now() + $this->options->budget;
        $attempts = $this->options->retries + 1;
        for ($attempt = 1; ; $attempt++) {
            $left = $deadline - self::now();
            if ($left <= 0.001) {
                throw new SendException("no answer within the time budget of {$this->options->budget} s", null, $attempt - 1);
            }
            $timeout = min($this->options->requestTimeout, $left);
            $retryAfter = null;
            try {
                $answer = $this->transport->request($method, $url, $body, $timeout, $timeout);
                if (!self::isTransient($answer->status)) {
                    return [$answer, $attempt];
                }
                $failure = "HTTP {$answer->status}";
                $retryAfter = self::parseRetryAfter($answer->retryAfter);
                $status = $answer->status;
            } catch (TransportException $e) {
                if (!$e->transient) {
                    throw new SendException($e->getMessage(), null, $attempt);
                }
                $failure = $e->getMessage();
                $status = null;
            }
            if ($attempt >= $attempts) {
                throw new SendException("no answer from the collector after {$attempt} attempt(s): {$failure}", $status, $attempt);
            }
            if ($retryAfter !== null && $retryAfter > $this->options->maxDelay) {
                throw new SendException(
                    sprintf('%s, and the collector asks to wait %d s', $failure, (int) $retryAfter),
                    $status,
                    $attempt
                );
            }
            $wait = $retryAfter ?? $this->backoff($attempt);
            if (self::now() + $wait >= $deadline) {
                throw new SendException(
                    sprintf('%s; a retry in %.1f s would not fit in the time budget of %s s', $failure, $wait, $this->options->budget),
                    $status,
                    $attempt
                );
            }
            $this->log(sprintf('%s; retrying in %.1f s (attempt %d of %d)', $failure, $wait, $attempt + 1, $attempts));
            usleep((int) round($wait * 1_000_000));
        }
    }

    /**
     * Exponential backoff with jitter: between half and all of
     * `baseDelay * 2^(attempt-1)`, capped at maxDelay, so that installs that
     * failed together do not all retry at the same instant.
     */
    private function backoff(int $attempt): float
    {
        $full = min($this->options->baseDelay * (2 ** min($attempt - 1, 16)), $this->options->maxDelay);

        return $full * (0.5 + random_int(0, 1_000_000) / 2_000_000);
    }

    /**
     * 429 and the gateway-like 5xx answers mean "later". 500 does not: a
     * collector that fails on this report would fail again.
     */
    private static function isTransient(int $status): bool
    {
        return in_array($status, [429, 502, 503, 504], true);
    }

    /**
     * `Retry-After` as seconds or as an HTTP date; null when absent or unreadable.
     */
    private static function parseRetryAfter(?string $value): ?float
    {
        if ($value === null) {
            return null;
        }
        $value = trim($value);
        if (preg_match('/^[0-9]+$/D', $value) === 1) {
            return (float) $value;
        }
        // An IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`), or RFC 2822 with an offset.
        $when = \DateTimeImmutable::createFromFormat('D, d M Y H:i:s \G\M\T', $value, new \DateTimeZone('UTC'))
            ?: \DateTimeImmutable::createFromFormat(\DateTimeInterface::RFC2822, $value);
        if ($when === false) {
            return null;
        }

        return max(0.0, (float) $when->format('U.u') - microtime(true));
    }

    /**
     * A refusal, with the problem's own words when it sent problem+json.
     */
    private static function refused(Response $answer, int $attempts): SendException
    {
        $problem = json_decode($answer->body, true);
        $parts = [];
        if (is_array($problem)) {
            $errors = $problem['errors'] ?? null;
            if (is_array($errors) && $errors !== []) {
                foreach ($errors as $e) {
                    $field = is_array($e) && is_string($e['field'] ?? null) ? $e['field'] : '';
                    $detail = is_array($e) && is_string($e['detail'] ?? null) ? $e['detail'] : '';
                    $parts[] = $field === '' ? $detail : "{$field}: {$detail}";
                }
            } elseif (is_string($problem['detail'] ?? null)) {
                $parts[] = $problem['detail'];
            }
        }
        $detail = implode('; ', $parts);

        return new SendException(
            "the collector refused the request (HTTP {$answer->status}): " . ($detail !== '' ? $detail : 'no details'),
            $answer->status,
            $attempts
        );
    }

    private function log(string $line): void
    {
        if ($this->options->logger === null) {
            return;
        }
        try {
            ($this->options->logger)('anonstats: ' . $line);
        } catch (\Throwable) {
            // A broken logger must not stop the retries.
        }
    }

    private static function now(): float
    {
        return hrtime(true) / 1e9;
    }
}
