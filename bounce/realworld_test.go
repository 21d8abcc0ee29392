package bounce

import "testing"

// realWorld are reply lines as providers and MTAs send them, each with the
// public page it was taken from, and the verdict an operator should get. The
// texts are joined to one line and stripped of their continuation codes, as
// the SMTP client hands them over; addresses and IPs are documentation ones.
var realWorld = []struct {
	code     int
	enhanced string
	text     string
	reason   Reason
	class    Class
}{
	// ---- Google. https://support.google.com/a/answer/3726730 (Gmail SMTP errors and codes)
	{550, "5.1.1", "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. Learn more at https://support.google.com/mail/?p=NoSuchUser 41si1234567qkd.123 - gsmtp", UserUnknown, Hard},
	{550, "5.2.1", "The email account that you tried to reach is inactive. For more information, go to https://support.google.com/mail/?p=DisabledUser", AccountDisabled, Hard},
	{550, "5.2.1", "The user you are trying to contact is receiving email at a rate that prevents additional messages from being delivered. For more information, go to Limits for sending & getting email.", Refused, Soft},
	{450, "4.2.1", "The user you are trying to contact is receiving mail too quickly. Please resend your message at a later time. If the user is able to receive mail at that time, your message will be delivered.", Refused, Soft},
	{452, "4.2.2", "The recipient's inbox is out of storage space. Please direct the recipient to Manage files in your Google Drive storage.", MailboxFull, Soft},
	{552, "5.2.2", "The recipient's inbox is out of storage space and inactive. Please direct the recipient to Manage files in your Google Drive storage.", AccountDisabled, Hard},
	{553, "5.1.2", "We weren't able to find the recipient domain. Please check for any spelling errors and make sure you didn't enter any spaces, periods, or other punctuation after the recipient's email address.", InvalidDomain, Hard},
	{421, "4.7.28", "Gmail has detected an unusual rate of email originating from your IP address 192.0.2.1. To protect our users from spam, email sent from your IP address has been temporarily rate limited. To review our bulk email senders guidelines, go to Email sender guidelines.", Refused, Soft},
	{421, "4.7.0", "Try again later, closing connection. (EHLO) For more information, go to About SMTP error messages.", ErrorIgnored, Ignored},
	{421, "4.4.5", "Server busy, try again later. For more information, go to About SMTP error messages.", ErrorIgnored, Ignored},
	{451, "4.3.0", "Email server has temporarily rejected this message. Go to About SMTP error messages for more information.", ErrorIgnored, Ignored},
	{452, "4.5.3", "Your message has too many recipients. For more information regarding Google's sending limits, go to Limits for sending & getting email.", Refused, Soft}, // about our message, not the address
	{552, "5.3.4", "Your message exceeded Google's message size limits. To view our message size guidelines, go to Send attachments with your Gmail message.", Refused, Soft},
	{550, "5.7.1", "The user or domain that you are sending to (or from) has a policy that prohibits the email that you sent. Contact your domain administrator for assistance.", Refused, Soft},
	{550, "5.7.26", "This email has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM. Authentication results: DKIM = did not pass SPF [example.com] with ip: [192.0.2.1] = did not pass.", Refused, Soft},
	{550, "5.7.25", "This message was blocked because the sending IP address doesn't have a PTR record, or the forwarding DNS entry doesn't reference the sending IP address.", Refused, Soft},
	// https://pastebin.com/6G7q8H39 (Exim log of a Gmail deferral)
	{421, "4.7.0", "[216.194.173.80 15] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. Please visit https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email Senders Guidelines. p4si3522070uam.9 - gsmtp", Refused, Soft},
	// https://pastebin.com/SWVXknth (Postfix bounce from Gmail)
	{550, "5.7.1", "[31.14.138.158 1] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been blocked. Please visit https://support.google.com/mail/?p=UnsolicitedIPError to review our Bulk Email Senders Guidelines. s25si6573124wmj.54 - gsmtp", Refused, Soft},
	// https://pastebin.com/zR4GN1WR
	{550, "5.7.1", "[82.192.84.102 12] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked. Please visit https://support.google.com/mail/?p=UnsolicitedMessageError for more information. h52si12217192ede.134 - gsmtp", Refused, Soft},

	// ---- Microsoft. https://www.spamresource.com/2023/09/microsoft-multiple-types-of-invalid.html
	{550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", UserUnknown, Hard},
	{550, "5.5.0", "Requested action not taken: mailbox unavailable (S2017062302). [BN1NAM02FT012.eop-nam02.prod.protection.outlook.com 2023-09-19T15:05:34.324Z 08DBB71928CA8F8E]", UserUnknown, Hard},
	{550, "5.4.1", "Recipient address rejected: Access denied. [DM6NAM12FT034.eop-nam12.prod.protection.outlook.com 2023-09-18T12:48:32.808Z 08DBB45899852BA7]", UserUnknown, Hard},
	// https://learn.microsoft.com/exchange/troubleshoot/email-delivery/ndr/fix-error-code-550-5-1-1-through-5-1-20-in-exchange-online
	{550, "5.1.1", "RESOLVER.ADR.ExRecipNotFound; not found", UserUnknown, Hard},
	// https://learn.microsoft.com/exchange/troubleshoot/email-delivery/ndr/fix-error-code-5-2-2-in-exchange-online
	{554, "5.2.2", "mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded", MailboxFull, Soft},
	// https://sevencreative.co.uk/how-to-remove-yourself-from-the-hotmail-block-list/
	{550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to [DB3EUR04FT007.eop-eur04.prod.protection.outlook.com]", Refused, Soft},
	// https://sendersupport.olc.protection.outlook.com/pm/troubleshooting.aspx (Outlook.com postmaster: S3140)
	{550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3140). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.", Refused, Soft},
	// https://support.binarylane.com.au/support/solutions/articles/11000047583-emails-to-hotmail-and-outlook-are-blocked
	{550, "", "SC-001 (BAY004-MC4F49) Unfortunately, messages from 192.0.2.1 weren't sent. Please contact your Internet service provider since part of their network is on our block list. You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.", Refused, Soft},
	// https://www.knownhost.com/wiki/email/troubleshooting/hotmail-blacklisting-removal-request
	{550, "", "SC-004 Mail rejected by Outlook.com for policy reasons. A block has been placed against your IP address because we have received complaints concerning mail coming from that IP address.", Refused, Soft},
	// https://forum.directadmin.com/threads/hotmail-ip-has-been-temporarily-rate-limited-due-to-ip-reputation-for-e-mail-delivery-information-see-https-aka-ms-postmaster-s775.82240/
	{451, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://aka.ms/postmaster (S775) [Name=Protocol Filter Agent][AGT=PFA][MxId=11BD5B61254CB1FC] [AMS0EPF0000019C.eurprd05.prod.outlook.com 2026-05-14T15:49:33.598Z 08DEADB0994CCD76]", Refused, Soft},
	// https://learn.microsoft.com/en-us/answers/questions/5910730/temporary-rate-limiting
	{451, "4.7.651", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S3114)", Refused, Soft},
	// https://www.suped.com/knowledge/email-deliverability/troubleshooting/what-causes-office365-temp-fails-and-how-can-they-be-resolved
	{451, "4.7.500", "Server busy. Please try again later from [192.0.2.1]. (AS843) [BN8NAM12FT047.eop-nam12.prod.protection.outlook.com]", Refused, Soft},
	// https://learn.microsoft.com/exchange/troubleshoot/email-delivery/ndr/fix-error-code-5-7-708-in-exchange-online
	{550, "5.7.708", "Service unavailable. Access denied, traffic not accepted from this IP.", Refused, Soft},
	// https://learn.microsoft.com/exchange/troubleshoot/email-delivery/ndr/fix-error-code-5-7-606-through-5-7-649-in-exchange-online
	{550, "5.7.606", "Access denied, banned sending IP [192.0.2.1]. To request removal from this list please visit https://sender.office.com/ and follow the directions.", Refused, Soft},

	// ---- Yahoo / AOL. https://senders.yahooinc.com/smtp-error-codes/ (Sample failed delivery message)
	{554, "", "delivery error: dd This user doesn't have a yahoo.com account (testing123@yahoo.com) [-5] - mta123.mail.mud.yahoo.com", UserUnknown, Hard},
	// http://help.yahoo.com/l/in/yahoo/mail/original/abuse/abuse-57.html
	{554, "", "delivery error: dd Sorry, your message to user@yahoo.com cannot be delivered. This account is over quota.", MailboxFull, Soft},
	// http://www.sitepackage.de/service/dokumentation/auswertung/typische-fehlermeldungen-bei-unzustellbarkeit.html
	{554, "", "delivery error: dd Sorry your message to user@yahoo.de cannot be delivered. This account has been disabled or discontinued", AccountDisabled, Hard},
	// https://support.cpanel.net/hc/en-us/articles/4403952239511
	{421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.verizonmedia.com/error-codes", Refused, Soft},
	// http://www.smtp-error-codes.info/bounce/yahoo/bounce_421_4.7.0_TS02.php
	{421, "4.7.0", "[TS02] Temporarily deferred", Refused, Soft},
	// https://help.yahoo.com/kb/SLN3444.html (Email sent to Yahoo Mail addresses is rejected)
	{553, "", "VS99-IP1 deferred", Refused, Soft},
	{451, "", "VS1-IP Excessive unknown recipients - possible Open Relay (#4.1.8)", Refused, Soft},
	{421, "", "Resources temporarily unavailable. Please try again later", ErrorIgnored, Ignored},
	// https://smtp.codes/yahoo
	{451, "", "example.yahoo.com Resources temporarily unavailable. Please try again later [#4.16.1].", ErrorIgnored, Ignored},

	// ---- Apple iCloud. https://smtp.codes/icloud
	{550, "5.1.1", "<example@icloud.com>: user does not exist", UserUnknown, Hard},
	{550, "5.7.1", "[CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137", Refused, Soft},
	{421, "4.7.1", "Messages to example@icloud.com deferred due to excessive volume. Try again later - https://support.apple.com/en-us/HT204137", Refused, Soft},
	{451, "4.7.1", "Service unavailable - try again later", ErrorIgnored, Ignored},
	{550, "5.7.1", "Your email was rejected due to having a domain present in the Spamhaus DBL -- see https://www.spamhaus.org/dbl/", Refused, Soft},
	// https://www.suped.com/knowledge/email-deliverability/troubleshooting/how-to-troubleshoot-and-resolve-email-bounces-to-icloud-mecom-and-maccom-addresses
	{450, "4.2.2", "user is overquota", MailboxFull, Soft},
	// https://tamingdns.com/bounce-decoder/apple (Hide My Email address turned off)
	{550, "5.7.1", "Relay not permitted for user.", AccountDisabled, Hard},

	// ---- GMX, Web.de (United Internet). https://postmaster.gmx.com/en/error-messages
	{554, "", "gmx.net (mxgmx104) Nemesis ESMTP Service not available 554-No SMTP service 554-IP address is block listed. 554 For explanation visit https://postmaster.gmx.net/en/case?c=r0201&i=ip&v=198.51.100.42&r=1MNcgj-1ue23t3pyV-00S2YR", Refused, Soft},
	// https://smtp.codes/unitedinternet/
	{550, "", "<example@example.com>: Requested action not taken: mailbox unavailable", UserUnknown, Hard},
	{550, "", "<example@example.com>: Reject due to SPF policy. The originating IP of the message is not permitted by the domain owner", Refused, Soft},
	// http://www.sitepackage.de/service/dokumentation/auswertung/typische-fehlermeldungen-bei-unzustellbarkeit.html
	{550, "", "Benutzer hat das Speichervolumen ueberschritten. / User has exhausted allowed storage space.", MailboxFull, Soft},
	{550, "5.2.1", "<user@gmx.de>... User is inactive", AccountDisabled, Hard},
	{552, "5.2.2", "Over STORAGE quota", MailboxFull, Soft},
	{554, "", "Sorry, no mailbox here by that name. (#5.1.1)", UserUnknown, Hard},
	{550, "", "Unrouteable address", UserUnknown, Hard},
	// https://new-faq.comservice-ffo.de/smtp-fehlermeldungen-e-mail-fehler/
	{421, "", "Rate limit reached. Please try again later", Refused, Soft},
	{421, "", "Reject due to policy violations", Refused, Soft},

	// ---- Orange. https://bentonow.com/smtp-errors/orange
	{421, "", "mwinf5c21 ME Trop de connexions, veuillez verifier votre configuration. Too many connections, slow down. OFR004_104 [104]", Refused, Soft},
	{421, "", "mwinf5c77 ME Service refuse. Veuillez essayer plus tard. Service refused, please try later. OFR004_105 [105]", Refused, Soft},

	// ---- Comcast. http://postmaster.comcast.net/mail-error-codes.html
	{554, "", "resimta-po-12v.sys.comcast.net resimta-po-12v.sys.comcast.net 192.0.2.1 found on one or more DNSBLs, see http://postmaster.comcast.net/smtp-error-codes.php#BL000001", Refused, Soft},
	// http://security.comcast.net/get-help/Mail-Delivery-Error-Messages.aspx
	{421, "", "[Too many sessions opened]", Refused, Soft},

	// ---- Mail.ru. https://mailout.ru/2015/09 (phrases "User not found", "Mailbox Full")
	{550, "", "Message was not accepted -- invalid mailbox. Local mailbox user@mail.ru is unavailable: user not found", UserUnknown, Hard},
	{550, "", "Message was not accepted -- invalid mailbox. Local mailbox user@mail.ru is unavailable: account is disabled", AccountDisabled, Hard},
	// https://viws.ru/en/poterya-pochtovyh-soobshchenii-oshibki-pochtovoi-sistemy.html
	{550, "5.7.1", "This message was not accepted due to domain owner DMARC policy (RFC 7489) https://help.mail.ru/mail-help/postmaster/dmarc", Refused, Soft},

	// ---- Yandex. https://yandex.com/support/mail/bounces/yandex.html
	{550, "5.7.1", "No such user!", UserUnknown, Hard},
	{550, "5.7.1", "Policy rejection on the target address", AccountDisabled, Hard},
	{552, "5.2.2", "Mailbox size limit exceeded", MailboxFull, Soft},
	{554, "5.7.1", "[2] Message rejected under suspicion of SPAM; https://ya.cc/1IrBc 1589458925-pSdEkvCLmI-M4dCaIMs", Refused, Soft},

	// ---- Gateways. https://www.suped.com/email-deliverability/answers/how-to-get-proofpoint-to-unblock-my-ip-address
	{554, "5.7.0", "Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1", Refused, Soft},
	// https://www.suped.com/knowledge/email-deliverability/troubleshooting/why-are-emails-bouncing-with-mimecast-anti-spoofing-policy-and-how-to-fix
	{550, "", "Rejected by header based Anti-Spoofing policy: user@example.com", Refused, Soft},
	// https://electronicaportatil.com/smtp-error-codes/ (Mimecast codes: greylisting)
	{451, "", "Internal resource temporarily unavailable - https://community.mimecast.com/docs/DOC-1369#451", ErrorIgnored, Ignored},
	// https://smtp.codes/550 (Barracuda, AT&T)
	{550, "", "cuda_nsu 5.1.1 <email@example.com> Recipient address rejected: User unknown", UserUnknown, Hard},
	{550, "5.2.1", "<EXAMPLE@PRODIGY.NET>... Addressee unknown, relay=[192.0.2.1]", UserUnknown, Hard},
	{550, "5.7.1", "Connections not accepted from servers without a valid sender domain. ## Fix reverse DNS for 192.0.2.1", Refused, Soft},
	// https://www.ionos.com/help/email/troubleshooting-mail-basicmail-business/error-messages-caused-by-undeliverable-email/
	{554, "", "Service unavailable; Client host [192.0.2.1] blocked using Barracuda Reputation; http://www.barracudanetworks.com/reputation/?pr=1&ip=192.0.2.1", Refused, Soft},
	// http://worldnet.att.net/general-info/bls_info/block_enduser.html (AT&T, BellSouth)
	{550, "", "[suspend] Mailbox currently suspended--Please contact correspondent directly.", AccountDisabled, Hard},
	{521, "", "<192.0.2.1> is blocked", Refused, Soft},
	// https://smtp.codes/rackspace
	{450, "4.2.1", "<email@example.com>: Mailbox received too much email in a short period of time (G30)", Refused, Soft},
	{451, "4.7.1", "Received too many messages from a new or untrusted IP (G28)", Refused, Soft},

	// ---- MTA defaults. https://www.postfix.org/LOCAL_RECIPIENT_README.html
	{550, "5.1.1", "<user@example.com>: Recipient address rejected: User unknown in local recipient table", UserUnknown, Hard},
	// https://www.dbmailserver.com/tui-xin-address-not-exist.htm (list of unknown-user replies)
	{550, "5.1.1", "xxx@abcd.com: Recipient address rejected: User unknown in virtual mailbox table", UserUnknown, Hard},
	{550, "", "Mailbox not found. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000728", UserUnknown, Hard},
	// https://www.postfix.org/postconf.5.html#reject_rbl_client (Postfix's RBL reply)
	{554, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1", Refused, Soft},
	// https://www.bytecamp.net/de/faq/email/zustellen.html (Postfix with postgrey)
	{450, "4.2.0", "<user@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html", ErrorIgnored, Ignored},
	{450, "4.7.1", "Client host rejected: cannot find your reverse hostname, [192.0.2.1]", Refused, Soft},
	{421, "4.7.0", "Error: too many connections from 192.0.2.1", Refused, Soft},
	// https://doc.dovecot.org/settings/core/#core_setting-quota_exceeded_message (Dovecot LMTP default)
	{552, "5.2.2", "<user@example.com> Quota exceeded (mailbox for user is full)", MailboxFull, Soft},
	// https://pastebin.com/6G7q8H39 (Exim greylisting)
	{451, "", "216.194.173.80 is not yet authorized to deliver mail from <chris@example.net> to <docs@example.com>. Please try later.", ErrorIgnored, Ignored},
	// https://pomoc.poczta.interia.pl/news-dlaczego-wiadomosc-nie-zostala-dostarczona,nId,6589600
	{550, "5.1.1", "Account not found", UserUnknown, Hard},
	{550, "5.7.1", "Recipient doesn't want your mail", Refused, Soft},
	// https://docs.selectel.ru/en/email-service/smtp-errors/
	{450, "", "ratelimit exceeded", Refused, Soft},
	// https://www.spambrella.com/faq/email-delivery-error-codes/
	{452, "4.3.1", "Insufficient system resources", Unknown, Soft},
}

func TestRealWorldReplies(t *testing.T) {
	c, err := New(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(realWorld) < 60 {
		t.Fatalf("only %d real-world lines", len(realWorld))
	}
	for _, tc := range realWorld {
		v := c.Classify(tc.code, tc.enhanced, tc.text)
		if v.Reason != tc.reason || v.Class != tc.class {
			t.Errorf("%d %s %q\n\tgot %s/%s (rule %s), want %s/%s", tc.code, tc.enhanced, tc.text, v.Reason, v.Class, v.Rule, tc.reason, tc.class)
		}
	}
}
