<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * What a host application calls: the administrator's opt-in and opt-out,
 * the exact preview of a report, sending it, and erasure.
 *
 * ```php
 * $client = new Client(TMP . 'config' . DS . 'anonymous_statistics.php',
 *     new Options(collector: 'https://stats.example.org'));
 * $client->optIn();                          // the administrator said yes
 * echo $client->preview($report);            // show exactly what is sent
 * $client->send($report);                    // after install or update
 * $client->forget();                         // the administrator withdraws
 * ```
 *
 * send() and forget() never throw and never take longer than the
 * {@see Options::$budget}: they return false, and {@see lastError()} says
 * why. Nothing is sent, and no connection is made, unless the opt-in file
 * exists and says `send` is true.
 */
final class Client
{
    /**
     * Placeholder of the public collector, as in the reference client:
     * products set their own in {@see Options::$collector} or in the
     * opt-in file.
     */
    public const DEFAULT_COLLECTOR = 'https://stats.example.org';

    private readonly OptInFile $file;
    private readonly Options $options;
    private ?string $lastError = null;
    private ?Delivery $lastDelivery = null;
    private ?string $lastReportId = null;

    /**
     * @param string         $optInPath the opt-in file, `.php` for the passbolt-style PHP array form,
     *                                  JSON otherwise; it need not exist (absent means not opted in)
     * @param Options|null   $options   collector, time budget and retries; null for the defaults
     * @param Transport|null $transport null uses {@see CurlTransport}
     */
    public function __construct(string $optInPath, ?Options $options = null, private readonly ?Transport $transport = null)
    {
        $this->file = new OptInFile($optInPath);
        $this->options = $options ?? new Options();
    }

    /**
     * The administrator's current choice as recorded in the opt-in file.
     *
     * @throws OptInException when the file cannot be read or is invalid
     */
    public function optInState(): OptIn
    {
        return $this->file->load();
    }

    /**
     * Whether reports may be sent: the file exists, is valid and says
     * `send` is true. Never throws (an unreadable file is "no").
     */
    public function isOptedIn(): bool
    {
        try {
            return $this->file->load()->send;
        } catch (\Throwable) {
            return false;
        }
    }

    /**
     * Records the administrator's agreement: `send` on, and an instance id
     * generated now if the file has none (a later opt-in keeps it). Sends
     * nothing.
     *
     * @param string|null $collector collector URL to record in the file, if any
     *
     * @return OptIn the state written
     *
     * @throws OptInException when the file cannot be read, is invalid or cannot be written
     */
    public function optIn(?string $collector = null): OptIn
    {
        $state = $this->file->load()->optedIn($collector);
        $this->file->save($state);

        return $state;
    }

    /**
     * Records that nothing may be sent any more. The instance id is kept,
     * so that {@see forget()} can still erase what was stored. Sends
     * nothing.
     *
     * @return OptIn the state written
     *
     * @throws OptInException when the file cannot be read, is invalid or cannot be written
     */
    public function optOut(): OptIn
    {
        $state = $this->file->load()->optedOut();
        $this->file->save($state);

        return $state;
    }

    /**
     * The exact JSON that {@see send()} posts for this report: the same
     * bytes, given the same `$reportId` (a fresh one when null, so that
     * only the `report_id` differs from what a later send() posts). It
     * carries the instance id from the opt-in file, and none before the
     * administrator opted in. Sends nothing and makes no connection; meant
     * to be shown to the administrator before asking, or on the settings
     * page.
     *
     * @param string|null $reportId the report id to use, lower-case hyphenated UUID
     *
     * @throws InvalidReportException when the collector would refuse the report
     * @throws OptInException         when the opt-in file cannot be read or is invalid
     */
    public function preview(Report $report, ?string $reportId = null): string
    {
        return $report->body($reportId ?? Uuid::v4(), $this->file->load()->instanceId);
    }

    /**
     * Sends the report, if and only if the administrator opted in, to
     * `POST /api/v1/reports`, with a fresh `report_id` (or `$reportId`, to
     * resend a report without counting it twice). Retries network errors,
     * 429, 502, 503 and 504 with the same `report_id`, honouring
     * `Retry-After`, within the time budget. With
     * {@see Options::$checkCatalog}, the collector's catalog is fetched
     * first and a report with names it does not list is not sent.
     *
     * Never throws. Returns true only when the collector stored the report
     * (202) or already had it (200); {@see lastDelivery()} then says which.
     * Returns false when not opted in (nothing is sent, no connection is
     * made), when the report is invalid, refused, or could not be delivered
     * in time; {@see lastError()} says why.
     *
     * @param string|null $reportId report id to use instead of a fresh one
     */
    public function send(Report $report, ?string $reportId = null): bool
    {
        $this->lastError = null;
        $this->lastDelivery = null;
        $this->lastReportId = null;
        $start = hrtime(true);
        try {
            $state = $this->file->load();
            if (!$state->send) {
                return $this->fail("nothing sent: the administrator has not opted in (choice kept in {$this->file->path()})");
            }
            $this->lastReportId = $reportId === null ? Uuid::v4() : Uuid::normalize($reportId);
            if ($this->lastReportId === null) {
                return $this->fail('report not sent: the report id is not a UUID');
            }
            $body = $report->body($this->lastReportId, $state->instanceId);
            if ($this->options->checkCatalog) {
                $check = $report->checkAgainst($this->collector($state, $this->options)->fetchCatalog());
                foreach ($check->warnings as $warning) {
                    $this->log("warning: {$warning}");
                }
                if (!$check->isOk()) {
                    return $this->fail("report not sent: the report does not match the catalog:\n  " . implode("\n  ", $check->errors));
                }
            }
            $left = $this->options->budget - (hrtime(true) - $start) / 1e9;
            if ($left <= 0.001) {
                return $this->fail("report not sent: no time left in the budget of {$this->options->budget} s");
            }
            $collector = $this->collector($state, $this->options->withBudget($left));
            $delivery = $collector->sendReport($body);
            $this->lastDelivery = $delivery;
            if ($delivery->status === Delivery::ACCEPTED) {
                $this->log("report {$this->lastReportId} accepted by {$collector->baseUrl()}");
                if ($delivery->ignored !== []) {
                    $this->log('the collector ignored names its catalog does not have: ' . implode(', ', $delivery->ignored));
                }
            } else {
                $this->log("report {$this->lastReportId} was already stored by {$collector->baseUrl()}: not counted again");
            }

            return true;
        } catch (\Throwable $e) {
            return $this->fail('report not sent: ' . $e->getMessage());
        }
    }

    /**
     * Checks a report against the collector's catalog (`GET
     * /api/v1/catalog`), as `anonstats send` does before sending: names the
     * catalog does not list and counters above their bound are errors,
     * attribute values it does not list are warnings (stored as `other`).
     * For the host application's tests and for showing administrators what
     * will be stored. Sends no report, but does connect to the collector
     * (whether or not the install is opted in), which sees the address
     * like that of any request: call it on the administrator's request or
     * in tests, not on every page.
     *
     * Never throws; null when the catalog could not be fetched within the
     * time budget ({@see lastError()} says why).
     */
    public function check(Report $report): ?CatalogCheck
    {
        $this->lastError = null;
        try {
            $state = $this->file->load();
        } catch (\Throwable) {
            $state = new OptIn();
        }
        try {
            return $report->checkAgainst($this->collector($state, $this->options)->fetchCatalog());
        } catch (\Throwable $e) {
            $this->fail('cannot fetch the catalog: ' . $e->getMessage());

            return null;
        }
    }

    /**
     * Asks the collector to erase what it stores about this install
     * (`POST /api/v1/erasures`, the id in the body). When the collector
     * confirms, the opt-in file is rewritten opted out and without the
     * instance id, so that a later opt-in gets a new id nothing links to
     * the old one. When the collector cannot be reached, the file is left
     * as it was, so that forget() can be called again.
     *
     * Works whether or not the install is opted in. Never throws; returns
     * true when the collector forgot the install, or when the file holds no
     * instance id (nothing stored can then be linked to this install).
     *
     * @param string|null $product the product the install reported as; null is the
     *                             collector's default (its catalog's first product)
     */
    public function forget(?string $product = null): bool
    {
        $this->lastError = null;
        $this->lastDelivery = null;
        $this->lastReportId = null;
        try {
            $state = $this->file->load();
            if ($state->instanceId === null) {
                $this->log("nothing to forget: {$this->file->path()} holds no instance id, so nothing stored can be linked to this install");

                return true;
            }
            $collector = $this->collector($state, $this->options);
            $collector->forget($state->instanceId, $product);
            $this->file->save($state->forgotten());
            $this->log("the collector at {$collector->baseUrl()} has forgotten this install's state; opted out and dropped the instance id from {$this->file->path()}");

            return true;
        } catch (\Throwable $e) {
            return $this->fail('the collector was not asked to forget this install: ' . $e->getMessage());
        }
    }

    /**
     * Why the last send() or forget() returned false, in one line; null
     * after a success.
     */
    public function lastError(): ?string
    {
        return $this->lastError;
    }

    /**
     * What the collector did with the last report send() delivered (accepted
     * or duplicate, names it ignored, attempts); null when it was not
     * delivered.
     */
    public function lastDelivery(): ?Delivery
    {
        return $this->lastDelivery;
    }

    /**
     * The `report_id` of the last send(), to resend the same report later
     * without counting it twice; null when nothing was built.
     */
    public function lastReportId(): ?string
    {
        return $this->lastReportId;
    }

    private function collector(OptIn $state, Options $options): Collector
    {
        return new Collector(
            $this->options->collector ?? $state->collector ?? self::DEFAULT_COLLECTOR,
            $options,
            $this->transport
        );
    }

    private function fail(string $message): bool
    {
        $this->lastError = $message;
        $this->log($message);

        return false;
    }

    private function log(string $line): void
    {
        if ($this->options->logger === null) {
            return;
        }
        try {
            ($this->options->logger)('anonstats: ' . $line);
        } catch (\Throwable) {
            // A broken logger must not break the host application either.
        }
    }
}
